r"""SymPy canonical forms of formulas, for `extract_formulas_batch(..., canonicalize="sympy")` (Eq. 7–8).

Each formula is parsed by `latex2sympy` (`A` and `a` stay different) and printed with the arguments of commutative
heads sorted and float literals as the rationals they spell: `2x` and `x \cdot 2` become `Mul(2,x)`, `\frac{1}{2}` and
`0.5` become `1/2`, `y=x` equals `x=y`. Nothing is simplified beyond what the parser evaluates, so `(x+1)^2` and
`x^2+2x+1` stay different reasoning steps. A formula that fails, overruns, is too long, carries a digest or contains a
prime `'` (which latex2sympy drops) keeps its string form. Parsing runs in the verifier's workers under a hard
per-formula limit, one call per batch; results, timeouts included, are cached in this process.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cachetools import LRUCache

from ._time_limit import run_with_time_limit

logger = logging.getLogger(__name__)

__all__ = ["SYMPY_MAX_FORMULA_CHARS", "canonical_forms"]

SYMPY_MAX_FORMULA_CHARS = 300

# The functions up to `_sympy_canonical` run in the workers. Heads whose argument order carries no meaning:
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


def _sympy_canonical(formula: str) -> str | None:
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig

    return _canonical_string(latex2sympy(formula, conversion_config=ConversionConfig(lowercase_symbols=False))) or None


# Canonical forms by formula (the 65,536 most recently used), timeouts and failures included (as the formula itself).
_sympy_cache: LRUCache[str, str] = LRUCache(maxsize=65_536)
_sympy_cache_lock = threading.Lock()


def canonical_forms(formulas: set[str], seconds: float, stats: dict[str, int] | None = None) -> dict[str, str]:
    """Each eligible formula's canonical form (itself on failure), with at most one worker call of `seconds` per
    formula; `stats["timeouts"]` and `stats["errors"]` count the conversions that overran or failed."""
    # Not a digest (`#`), nor a prime: latex2sympy drops them (`f'(x)` parses as `f(x)`), merging different formulas.
    eligible = [f for f in formulas if len(f) <= SYMPY_MAX_FORMULA_CHARS and "#" not in f and "'" not in f]
    with _sympy_cache_lock:
        canonical = {formula: _sympy_cache[formula] for formula in eligible if formula in _sympy_cache}
    pending = sorted(formula for formula in eligible if formula not in canonical)
    if not pending:
        return canonical
    outcomes = run_with_time_limit(_sympy_canonical, pending, seconds)
    if unavailable := [outcome.value for outcome in outcomes if outcome.status == "unavailable"]:
        # The string forms are still a valid (coarser) F_i; nothing is cached, so the next batch tries again.
        logger.warning("SymPy canonicalization unavailable, keeping string forms for this batch: %s", unavailable[0])
        return canonical
    if stats is not None:
        for key, status in (("timeouts", "timeout"), ("errors", "error")):
            stats[key] = stats.get(key, 0) + sum(outcome.status == status for outcome in outcomes)
    with _sympy_cache_lock:
        for formula, outcome in zip(pending, outcomes, strict=True):
            ok = outcome.status == "ok" and isinstance(outcome.value, str) and outcome.value
            canonical[formula] = _sympy_cache[formula] = outcome.value if ok else formula
    return canonical
