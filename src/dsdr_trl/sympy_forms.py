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
Parsing costs a few milliseconds per formula and runs in the worker pool of
`dsdr_trl._time_limit.map_with_time_limit` under a hard per-formula limit, since a short string such as
`\binom{100000000}{50000000}` keeps SymPy busy in C code for minutes. A batch makes one worker call for all its
distinct uncached formulas; results (timeouts included, so a hostile formula costs its time only once) are cached
in this process.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from typing import Any

from ._time_limit import map_with_time_limit

logger = logging.getLogger(__name__)

__all__ = ["SYMPY_MAX_FORMULA_CHARS", "canonical_forms"]

SYMPY_MAX_FORMULA_CHARS = 300
_SYMPY_CACHE_SIZE = 65_536

# The functions up to `_load_sympy_canonicalizer` run in the time-limit worker processes.


# Operators whose argument order carries no meaning; their canonical arguments are sorted.
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


class _SympyCanonicalizer:
    """The function mapped in the workers. It pickles as a call to `_load_sympy_canonicalizer`, so a worker imports and
    warms up the parser while loading it, when the worker starts, outside the clock of any formula."""

    def __call__(self, formula: str) -> str | None:
        return _sympy_canonical(formula)

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_load_sympy_canonicalizer, ())


def _load_sympy_canonicalizer() -> _SympyCanonicalizer:
    try:
        _sympy_canonical("x+1")
    except Exception:  # noqa: S110 - a broken install shows up as every formula keeping its string form
        pass
    return _SympyCanonicalizer()


_SYMPY_CANONICALIZER = _SympyCanonicalizer()
_sympy_cache: OrderedDict[str, str] = OrderedDict()
_sympy_cache_lock = threading.Lock()


def _sympy_eligible(formula: str) -> bool:
    # latex2sympy silently drops primes (`f'(x)` parses as `f(x)`), which would merge different formulas.
    return len(formula) <= SYMPY_MAX_FORMULA_CHARS and "#" not in formula and "'" not in formula


def canonical_forms(formulas: set[str], seconds: float, stats: dict[str, int] | None = None) -> dict[str, str]:
    """Maps each eligible formula to its canonical form (or itself on failure) with at most one worker call.

    `seconds` is the hard limit per formula; `stats` is passed to `map_with_time_limit` (timeouts and errors).
    """
    canonical: dict[str, str] = {}
    pending: list[str] = []
    with _sympy_cache_lock:
        for formula in formulas:
            if not _sympy_eligible(formula):
                continue
            cached = _sympy_cache.get(formula)
            if cached is None:
                pending.append(formula)
            else:
                _sympy_cache.move_to_end(formula)
                canonical[formula] = cached
    if not pending:
        return canonical
    pending.sort()
    try:
        results = map_with_time_limit(_SYMPY_CANONICALIZER, pending, seconds, None, stats)
    except RuntimeError as error:
        # A missing worker must not stop a training run; the string forms are still a valid (coarser) F_i. Nothing
        # is cached, so the next batch tries again.
        logger.warning("SymPy canonicalization unavailable, keeping string forms for this batch: %s", error)
        return canonical
    with _sympy_cache_lock:
        for formula, result in zip(pending, results, strict=True):
            value = result if isinstance(result, str) and result else formula
            canonical[formula] = value
            _sympy_cache[formula] = value
        while len(_sympy_cache) > _SYMPY_CACHE_SIZE:
            _sympy_cache.popitem(last=False)
    return canonical
