"""Verifiable rewards for math RL with [`~trl.GRPOTrainer`], with TRL's signature: `completions` and every dataset
column as keyword arguments in, one float (or `None`: not scored) per completion out. Completions are treated as
hostile: answer extraction is a linear scan, and all SymPy work (math-verify) runs in worker processes under a hard
per-item time limit ([`~dsdr_trl._time_limit.run_with_time_limit`]).
"""

from __future__ import annotations

import functools
import inspect
import numbers
import pkgutil
import re
import threading
import warnings
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from cachetools import FIFOCache, LRUCache, cached
from trl import rewards as trl_rewards

from ._time_limit import Outcome, run_with_time_limit, verifier_workers
from .formulas import completion_text

__all__ = ["ANSWER_EXTRACTION", "REWARD_FUNCS", "accuracy_reward", "extract_answer", "get_reward_func"]
__all__ += ["load_reward_funcs", "make_accuracy_reward", "number_text", "verifier_workers"]

# How `extract_answer` finds the final answer: "strict" reads `\boxed{}` only, as TRL's and lighteval's verifiers do.
ANSWER_EXTRACTION = ("lenient", "strict")

# Wall-time limit per item (one answer, or one reference's check): ordinary answers take milliseconds; with the kill,
# a hostile one costs under 2 s and scores 0.0.
VERIFY_TIME_LIMIT_SECONDS = 1.5
# Longer extracted answers score 0.0 unparsed: no final answer is that long, and SymPy's cost grows fast with size.
MAX_ANSWER_CHARS = 1_000
# Only the end of a completion is searched, which bounds the cost of a runaway generation.
MAX_SCAN_CHARS = 200_000

# Escaped backslash or brace (skipped), `\boxed{`/`\fbox{`, or a brace; each anchored by a literal, so linear.
_BOX_TOKENS = re.compile(r"(\\\\|\\[{}])|(\\(?:boxed|fbox)\s*\{)|(\{)|(\})")
_ANSWER_LABEL = re.compile(r"\banswer\s*:", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")
_MATH_DELIMITERS = ("$", "\\(", "\\[", "\\boxed", "\\fbox")

# Items that overran (the 4,096 latest), `(reference, None)` checks or `(reference, answer)` pairs: not sent again, so
# each costs the limit once per process.
_overran: FIFOCache[tuple[str, str | None], None] = FIFOCache(maxsize=4_096)
_overran_lock = threading.Lock()


def _last_match(pattern: re.Pattern[str], text: str) -> tuple[int, str] | None:
    """`(end offset, matched text)` of the last match of `pattern` in `text`."""
    # A forward scan keeps the cost linear; searching backwards from each candidate start could be quadratic.
    last = next(iter(deque(pattern.finditer(text), maxlen=1)), None)
    return None if last is None else (last.end(), last.group())


def _last_boxed(text: str) -> str | None:
    """Content of the `\\boxed{...}`/`\\fbox{...}` whose closing brace comes last, braces matched in one pass."""
    # For each open brace: the index where the box content starts if the brace opens a box, else -1.
    open_braces: list[int] = []
    last: tuple[int, int] | None = None
    for match in _BOX_TOKENS.finditer(text):
        kind = match.lastindex
        if kind in (2, 3):
            open_braces.append(match.end() if kind == 2 else -1)
        elif kind == 4 and open_braces:
            content_start = open_braces.pop()
            if content_start >= 0:
                last = (content_start, match.start())
    return None if last is None else text[last[0] : last[1]]


def _last_answer_line(text: str) -> str | None:
    """Rest of the line after the last `Answer:` label, or the next non-empty line if the label ends its line."""
    label = _last_match(_ANSWER_LABEL, text)
    if label is None:
        return None
    line, _, following = text[label[0] :].partition("\n")
    if not line.strip(" \t*"):
        line = next((candidate for candidate in following.split("\n", 8) if candidate.strip()), "")
    return line


def _last_math_span(text: str) -> tuple[int, str] | None:
    """Last complete `$...$`/`$$...$$`, `\\(...\\)` or `\\[...\\]` span as `(end offset, content)`."""
    spans: list[tuple[int, str]] = []
    # `\$` is a literal dollar sign; blank it out (same length, so offsets stay valid) before pairing delimiters.
    # `$$` becomes one `$` placed where the closing one of a pair ends, keeping offsets exact.
    pieces = text.replace("\\$", "  ").replace("$$", " $").split("$")
    # Pieces at odd indices lie between a pair of `$`; the last piece is unterminated when the count of `$` is odd.
    offset = 0
    for index, piece in enumerate(pieces[:-1]):
        offset += len(piece) + 1
        if index % 2 == 1 and piece.strip():
            spans = [(offset, piece)]  # the last pair so far
    for opening, closing in (("\\(", "\\)"), ("\\[", "\\]")):
        close = text.rfind(closing)
        if close > 0:
            open_ = text.rfind(opening, 0, close)
            if open_ >= 0:
                spans.append((close + len(closing), text[open_ + len(opening) : close]))
    return max(spans, default=None)


def _check_extraction(answer_extraction: str) -> None:
    if answer_extraction not in ANSWER_EXTRACTION:
        raise ValueError(f"answer_extraction must be one of {ANSWER_EXTRACTION}, got {answer_extraction!r}.")


def _clean_answer(answer: str) -> str:
    # Markdown emphasis and a sentence-final period are not part of the answer, and math-verify rejects `5.`.
    answer = answer.strip().strip("*").strip()
    while answer.endswith((".", ",", ";")) and not answer.endswith("\\."):
        answer = answer[:-1].rstrip()
    return answer


def extract_answer(text: str, answer_extraction: str = "lenient") -> str | None:
    r"""
    The final answer of a completion's text, without surrounding whitespace, markdown emphasis and a trailing period;
    `None` if nothing answer-like is found.

    `answer_extraction="lenient"`, in order of preference: the content of the last `\boxed{...}` (or `\fbox{...}`),
    braces matched; the rest of the last `Answer: ...` line (the format DAPO-Math-17k prompts ask for); the last math
    span (`$...$`, `\(...\)`, `\[...\]`) or the last number, whichever ends later. `"strict"`: the last `\boxed{...}`
    only, as TRL's and lighteval's verifiers read completions. Only the last [`MAX_SCAN_CHARS`] characters are
    searched, each step linear in their length, so any input is safe.

    Example:
    ```python
    >>> extract_answer(r"So $x = \frac{1}{2}$, hence \boxed{\frac{1}{2}}.")
    '\\frac{1}{2}'
    >>> extract_answer("The sum is 30 + 4.\nAnswer: 34")
    '34'
    ```
    """
    _check_extraction(answer_extraction)
    if not isinstance(text, str):
        return None
    text = text[-MAX_SCAN_CHARS:]
    boxed = _last_boxed(text)
    if answer_extraction == "strict":
        return None if boxed is None else _clean_answer(boxed) or None
    for extracted in (boxed, _last_answer_line(text)):
        if extracted is not None and (cleaned := _clean_answer(extracted)):
            return cleaned
    last = max(filter(None, (_last_math_span(text), _last_match(_NUMBER, text))), default=None)
    return None if last is None else _clean_answer(last[1]) or None


def number_text(value: Any) -> str | None:
    """
    A number (Python or NumPy of any width, `Decimal`, `Fraction`; not `bool`) as a reference answer in positional
    digits, since math-verify reads `1e+20` as an expression in Euler's number; `None` for NaN, infinities and
    non-numbers. Floats keep their shortest round-trip digits (`numpy.float32(0.1)` is `0.1`), `3.0` is `3`, and
    integers of any length go through `Decimal`.

    ```python
    >>> [number_text(value) for value in (1e20, 1e-05, 2.5, 3.0, -7, float("nan"), True)]
    ['100000000000000000000', '0.00001', '2.5', '3', '-7', None, None]
    ```
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal)):
        return None
    if isinstance(value, numbers.Rational) and not isinstance(value, numbers.Integral):
        return f"{number_text(value.numerator)}/{number_text(value.denominator)}"
    # `str` of a NumPy float is the shortest round-trip text of its own width, exponent or not; Decimal reads both.
    exact = Decimal(int(value)) if isinstance(value, numbers.Integral) else Decimal(str(value))
    if not exact.is_finite():
        return None
    text = format(exact, "f")
    return "0" if exact.is_zero() else text.rstrip("0").rstrip(".") if "." in text else text


# From here to `_gold_text`: what runs in the worker processes, which imported math-verify on start.
_PROBE = "0"  # a reference whose comparison with a plain number overruns would overrun with every answer


@cached(LRUCache(maxsize=1))
def _configs() -> tuple[list, list]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return [LatexExtractionConfig()], [LatexExtractionConfig(), ExprExtractionConfig()]


def _parse_math(text: str, config: list) -> list:
    """Parses `text` with `config`, first wrapped in `\\boxed{}` when it has no math delimiters (math-verify's LaTeX
    extraction finds nothing in bare `\\frac{\\sqrt{3}}{2}`)."""
    import math_verify

    attempts = [text] if any(delimiter in text for delimiter in _MATH_DELIMITERS) else [f"\\boxed{{{text}}}", text]
    for attempt in attempts:
        parsed = math_verify.parse(attempt, config, parsing_timeout=None)
        if parsed:
            return parsed
    return []


@cached(LRUCache(maxsize=4_096))
def _parse_gold(gold: str) -> list:
    """The parsed reference, once compared with a number, so that one whose every comparison would overrun
    (`(10^{9})!`) overruns here, in its own check, rather than in each of its answers'."""
    import math_verify

    latex_only, latex_or_expr = _configs()
    parsed = _parse_math(gold, latex_only) or _parse_math(gold, latex_or_expr)
    if parsed:
        math_verify.verify(parsed, _parse_math(_PROBE, latex_or_expr), timeout_seconds=None)
    return parsed


def _verify(gold_and_answer: tuple[str, str | None]) -> float:
    """Whether the reference is usable (1.0 or 0.0) when the answer is `None`, else the answer's score against it."""
    import math_verify

    gold, answer = gold_and_answer
    gold_parsed = _parse_gold(gold)
    if answer is None:
        return float(bool(gold_parsed))
    prediction = _parse_math(answer, _configs()[1])
    if not gold_parsed or not prediction:
        return 0.0
    # math-verify's comparison is not symmetric: the reference goes first.
    return float(math_verify.verify(gold_parsed, prediction, timeout_seconds=None))


def _gold_text(solution: Any) -> str | None:
    """The reference as text; `None` (not scored) when empty, not text or a number, or over `MAX_ANSWER_CHARS`."""
    text = solution if isinstance(solution, str) else number_text(solution)
    return text if text is not None and text.strip() and len(text) <= MAX_ANSWER_CHARS else None


def _verify_items(items: list[tuple[str, str | None]]) -> list[Outcome]:
    """The outcome of each item; one that overran in an earlier call is not sent again."""
    with _overran_lock:
        todo = [item for item in items if item not in _overran]
    outcomes = dict(zip(todo, run_with_time_limit(_verify, todo, VERIFY_TIME_LIMIT_SECONDS), strict=True))
    overran = [item for item, outcome in outcomes.items() if outcome.status == "timeout"]
    with _overran_lock:
        _overran.update(dict.fromkeys(overran))
    for gold, answer in overran:
        if answer is None:
            warnings.warn(
                f"The reference {gold[:200]!r} cannot be verified within {VERIFY_TIME_LIMIT_SECONDS:g} s; its rows score "
                "None from now on (counted in dsdr/verifier_timeouts). Write it in a form SymPy can compare quickly.",
                RuntimeWarning,
                stacklevel=4,
            )
    return [outcomes.get(item, Outcome("timeout")) for item in items]


def _answer(completion: Any, answer_extraction: str) -> str | None:
    try:
        answer = extract_answer(completion_text(completion), answer_extraction)  # None for a completion without text
    except Exception:
        return None
    return answer if answer is not None and len(answer) <= MAX_ANSWER_CHARS else None


def _accuracy(
    completions: list[Any], solution: list[Any], answer_extraction: str, **kwargs: Any
) -> list[float | None]:
    golds = [_gold_text(gold) for gold in solution]
    if len(golds) != len(completions):
        raise ValueError(
            f"Got {len(completions)} completions but {len(golds)} solutions; expected one per completion."
        )
    # References are checked first, so the answers of one that cannot be used (or overruns) are not sent at all.
    checks = list(dict.fromkeys((gold, None) for gold in golds if gold is not None))
    outcomes = dict(zip(checks, _verify_items(checks), strict=True))
    usable = {gold for (gold, _), outcome in outcomes.items() if outcome == ("ok", 1.0)}
    answers = [
        _answer(completion, answer_extraction) if gold in usable else None
        for completion, gold in zip(completions, golds, strict=True)
    ]
    pairs = list(
        dict.fromkeys((gold, answer) for gold, answer in zip(golds, answers, strict=True) if answer is not None)
    )
    outcomes.update(zip(pairs, _verify_items(pairs), strict=True))
    rewards: list[float | None] = []
    counts = {"timeout": 0, "unavailable": 0}
    for gold, answer in zip(golds, answers, strict=True):
        # What decides the row: its (reference, answer) pair, else its reference's check (nothing without one).
        status, value = outcomes.get((gold, answer), ("no reference", None))
        if status in counts:
            counts[status] += 1
        if answer is None:  # 0.0 for no answer (or one too long to parse); None where the reference is unusable
            rewards.append(0.0 if gold in usable else None)
        else:  # an answer that overran or failed scores 0.0; one the pool could not score is not scored
            rewards.append(None if status == "unavailable" else value if status == "ok" else 0.0)
    if counts["unavailable"]:
        reason = next(value for status, value in outcomes.values() if status == "unavailable")
        warnings.warn(
            f"The verifier's worker pool could not score {counts['unavailable']} of {len(completions)} completions "
            f"({reason}); their rewards are None. The next call starts a new pool.",
            RuntimeWarning,
            stacklevel=3,
        )
    if callable(log_metric := kwargs.get("log_metric")):
        log_metric("dsdr/verifier_timeouts", float(counts["timeout"]))
        log_metric("dsdr/verifier_failures", float(counts["unavailable"]))
    if callable(log_extra := kwargs.get("log_extra")):
        log_extra("answer", answers)
        log_extra("reference", golds)
    return rewards


def accuracy_reward(completions: list[Any], solution: list[Any], **kwargs: Any) -> list[float | None]:
    r"""
    Scores 1.0 for a completion whose final answer is mathematically equivalent to the reference, else 0.0.

    The answer found by [`extract_answer`] (lenient: `\boxed{}`, else `Answer:`, else the last math span or number; for
    TRL's and lighteval's `\boxed{}`-only reading use [`make_accuracy_reward`]`("strict")`) is compared with
    math-verify against the reference (bare, in `$...$` or `\boxed{}`). Each distinct (reference, answer) pair is
    verified once per call in worker processes ([`verifier_workers`]) under [`VERIFY_TIME_LIMIT_SECONDS`] per item, so
    any thread and any text are safe: an overrun, an answer over [`MAX_ANSWER_CHARS`], non-text content and any error
    score 0.0; an item that overran costs the limit once per process. A problem of the pool raises nothing: its rows
    get `None`, with a `RuntimeWarning`.

    Args:
        completions (`list[str]` or `list[list[dict[str, str]]]`):
            Strings, or conversations whose last message's `"content"` is scored.
        solution (`list[str]`):
            The reference answer of each completion (the dataset's `solution` column, repeated per generation).
        **kwargs:
            Other columns and trainer arguments: with `log_extra` the completions table gets each row's `answer` and
            `reference`; with `log_metric` rows that overran count in `dsdr/verifier_timeouts`, rows the pool could
            not score in `dsdr/verifier_failures`.

    Returns:
        `list[float | None]`: `None` where the reference cannot be parsed or compared within the limit (named once in
        a `RuntimeWarning`) or the pool could not score the row, so the trainer skips the sample.

    Example:
    ```python
    >>> accuracy_reward([r"... so \boxed{\frac{1}{2}}", "Answer: 0.4"], solution=["0.5", "0.5"])
    [1.0, 0.0]
    ```
    """
    return _accuracy(completions, solution, "lenient", **kwargs)


def make_accuracy_reward(answer_extraction: str = "lenient") -> Callable[..., list[float | None]]:
    """[`accuracy_reward`] finding the answer the `answer_extraction` way (one of [`ANSWER_EXTRACTION`], else
    `ValueError`); its `__name__` stays `"accuracy_reward"`, after which TRL names the metric."""
    _check_extraction(answer_extraction)
    if answer_extraction == "lenient":
        return accuracy_reward

    @functools.wraps(accuracy_reward)
    def reward(completions: list[Any], solution: list[Any], **kwargs: Any) -> list[float | None]:
        return _accuracy(completions, solution, answer_extraction, **kwargs)

    return reward


# Ours, then TRL's under the names `trl grpo --reward_funcs` accepts (`accuracy` and TRL's `accuracy_reward` share the
# function name `accuracy_reward`).
REWARD_FUNCS: dict[str, Callable[..., list[float | None]]] = {
    "accuracy": accuracy_reward,
    "accuracy_reward": trl_rewards.accuracy_reward,
    "reasoning_accuracy_reward": trl_rewards.reasoning_accuracy_reward,
    "think_format_reward": trl_rewards.think_format_reward,
    # trl/scripts/grpo.py's values; `get_reward_func(..., max_completion_length=N)` scales them to the run.
    "get_soft_overlong_punishment": trl_rewards.get_soft_overlong_punishment(1280, soft_punish_cache=256),
}


def get_reward_func(name: str, max_completion_length: int | None = None) -> Callable[..., list[float | None]]:
    """
    The reward function named `name`: a key of [`REWARD_FUNCS`] or a dotted path such as `"my_package.rewards.my_reward"`
    imported from `sys.path`; else `ValueError`. Given `max_completion_length`, `get_soft_overlong_punishment` punishes
    its last fifth (TRL's 256 of 1280) instead of TRL's fixed 1280-token window.
    """
    if name == "get_soft_overlong_punishment" and max_completion_length is not None:
        return trl_rewards.get_soft_overlong_punishment(max_completion_length, max(1, max_completion_length // 5))
    if name in REWARD_FUNCS:
        return REWARD_FUNCS[name]
    hint = f"Pass one of {sorted(REWARD_FUNCS)} or a dotted import path such as 'my_package.rewards.my_reward'."
    if "." not in name:
        raise ValueError(f"Unknown reward function {name!r}. {hint}")
    try:
        func = pkgutil.resolve_name(name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"Could not import reward function {name!r}: {error}. {hint}") from error
    if not callable(func):
        raise ValueError(f"{name!r} resolves to a {type(func).__name__}, not a callable reward function. {hint}")
    return func


def load_reward_funcs(
    names: list[str],
    max_completion_length: int | None = None,
    answer_extraction: str = "lenient",
    correctness_reward: str | None = None,
) -> list[Callable[..., list[float | None]]]:
    """The reward functions `names` give (see [`get_reward_func`]; `"accuracy"` reads answers the `answer_extraction`
    way), each failing with its name when it returns anything but a number or `None` per completion (TRL would fail
    later, without naming it). `ValueError` for no names, two functions of one `__name__` (their metrics would
    collide) or a `correctness_reward` that names none of them."""
    from trl.trainer.utils import get_callable_name

    accuracy = make_accuracy_reward(answer_extraction)
    if not names:
        raise ValueError("reward_funcs is empty; give at least one, e.g. --reward_funcs accuracy.")
    funcs = {
        get_callable_name(func): func
        for func in (accuracy if n == "accuracy" else get_reward_func(n, max_completion_length) for n in names)
    }
    if len(funcs) < len(names):
        raise ValueError(
            f"reward_funcs {names} give functions with the same name; their metrics and the correctness_reward lookup "
            "would collide. Keep one of them (e.g. 'accuracy' or TRL's 'accuracy_reward')."
        )
    if correctness_reward not in (None, *funcs):
        raise ValueError(
            f"correctness_reward={correctness_reward!r} is not one of the reward functions {list(funcs)} (it names a "
            "function by its __name__, e.g. 'accuracy_reward' for --reward_funcs accuracy)."
        )

    def checked(name: str, func: Callable) -> Callable:
        @functools.wraps(func)
        def reward(*args: Any, **kwargs: Any) -> list[float | None]:
            values = func(*args, **kwargs)
            if bad := [value for value in values if not (value is None or isinstance(value, numbers.Real))]:
                raise TypeError(
                    f"reward function {name!r} returned {type(bad[0]).__name__} {str(bad[0])[:40]!r}; a reward "
                    "function returns a number or None per completion."
                )
            return values

        return func if inspect.iscoroutinefunction(func) else reward

    return [checked(name, func) for name, func in funcs.items()]
