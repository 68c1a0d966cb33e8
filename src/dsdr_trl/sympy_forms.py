r"""SymPy canonical forms of formulas, for `extract_formulas_batch(..., canonicalize="sympy")` (Eq. 7–8).

Each formula is parsed with `latex2sympy2_extended.latex2sympy` (with `lowercase_symbols=False`: `A` and `a` are
different variables) and printed in a functional form with the arguments of commutative heads sorted (`Add`,
`Mul`, `Equality`, `Unequality`, `And`, `Or`, sets, `Max`, `Min`, …) and float literals turned into the rationals
they spell: `2x`, `2 x`, `x \cdot 2` and `2\cdot x` all become `Mul(2,x)`, `x^2+1` and `1+x^2` become
`Add(1,Pow(x,2))`, `\frac{1}{2}` and `0.5` become `1/2`, and `y=x` equals `x=y`. Nothing is simplified on top of
what the parser itself evaluates (it reduces numeric fractions and binomials), so `1+1` and `2`, or `(x+1)^2`
and `x^2+2x+1`, stay different formulas: they are different reasoning steps. A formula that fails to parse, times
out, prints longer than `dsdr_trl.formulas.MAX_FORMULA_CHARS`, is longer than `SYMPY_MAX_FORMULA_CHARS`, carries a
digest or contains a prime `'` (which latex2sympy silently drops) keeps its string form, so a set can mix both kinds.
Parsing runs in the verifier's worker processes under a hard per-formula limit (`\binom{100000000}{50000000}` keeps
SymPy busy in C code for minutes), one call per batch; results, timeouts included, are cached in this process.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from cachetools import LRUCache

from ._time_limit import run_with_time_limit

logger = logging.getLogger(__name__)

__all__ = ["SYMPY_MAX_FORMULA_CHARS", "canonical_forms"]

SYMPY_MAX_FORMULA_CHARS = 300

# The functions up to `_sympy_canonical` run in the worker processes. Operators whose argument order carries no meaning; their canonical arguments are sorted.
_UNORDERED_HEADS = frozenset(
    {"Add", "Mul", "Equality", "Unequality", "And", "Or", "Xor", "FiniteSet", "Union", "Intersection", "Max", "Min"}
    | {"gcd", "lcm"}
)


def _canonical_string(expr: Any) -> str:
    import sympy

    if isinstance(expr, (list, tuple)):
        return "[" + ",".join(_canonical_string(item) for item in expr) + "]"
    if isinstance(expr, sympy.MatrixBase):
        return "Matrix(" + _canonical_string(expr.tolist()) + ")"
    if isinstance(expr, sympy.Float):
        # "0.5" should equal "\frac{1}{2}": a decimal literal is the rational it spells, not a binary float.
        return str(sympy.Rational(str(expr)))
    if isinstance(expr, sympy.Basic) and expr.args:
        arguments = [_canonical_string(argument) for argument in expr.args]
        head = type(expr).__name__
        if head in _UNORDERED_HEADS:
            arguments.sort()
        return f"{head}({','.join(arguments)})"
    if isinstance(expr, (sympy.Basic, bool, int)):
        return str(expr)
    raise TypeError(f"unexpected latex2sympy result of type {type(expr).__name__}")


@functools.cache
def _conversion_config() -> Any:
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig

    return ConversionConfig(lowercase_symbols=False)


def _sympy_canonical(formula: str) -> str | None:
    from latex2sympy2_extended import latex2sympy

    return _canonical_string(latex2sympy(formula, conversion_config=_conversion_config())) or None


# Canonical forms by formula (the 65,536 most recently used), timeouts and failures included (as the formula itself).
_sympy_cache: LRUCache[str, str] = LRUCache(maxsize=65_536)
_sympy_cache_lock = threading.Lock()


def _sympy_eligible(formula: str) -> bool:
    # latex2sympy silently drops primes (`f'(x)` parses as `f(x)`), which would merge different formulas.
    return len(formula) <= SYMPY_MAX_FORMULA_CHARS and "#" not in formula and "'" not in formula


def canonical_forms(formulas: set[str], seconds: float, stats: dict[str, int] | None = None) -> dict[str, str]:
    """Maps each eligible formula to its canonical form (or itself on failure) with at most one worker call.

    `seconds` is the hard limit per formula; `stats["timeouts"]` and `stats["errors"]` count the formulas whose
    conversion overran or failed.
    """
    canonical: dict[str, str] = {}
    with _sympy_cache_lock:
        for formula in formulas:
            if _sympy_eligible(formula) and formula in _sympy_cache:
                canonical[formula] = _sympy_cache[formula]
    pending = sorted(formula for formula in formulas if _sympy_eligible(formula) and formula not in canonical)
    if not pending:
        return canonical
    outcomes = run_with_time_limit(_sympy_canonical, pending, seconds)
    unavailable = [outcome.value for outcome in outcomes if outcome.status == "unavailable"]
    if unavailable:
        # A missing worker must not stop a training run; the string forms are still a valid (coarser) F_i. Nothing
        # is cached, so the next batch tries again.
        logger.warning("SymPy canonicalization unavailable, keeping string forms for this batch: %s", unavailable[0])
        return canonical
    if stats is not None:
        for key, status in (("timeouts", "timeout"), ("errors", "error")):
            stats[key] = stats.get(key, 0) + sum(outcome.status == status for outcome in outcomes)
    with _sympy_cache_lock:
        for formula, outcome in zip(pending, outcomes, strict=True):
            value = (
                outcome.value
                if outcome.status == "ok" and isinstance(outcome.value, str) and outcome.value
                else formula
            )
            canonical[formula] = _sympy_cache[formula] = value
    return canonical
