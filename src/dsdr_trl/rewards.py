"""
Verifiable rewards for math RL with [`~trl.GRPOTrainer`].

A reward function takes `completions` plus every dataset column as a keyword argument (one value per completion) and
returns one float per completion, or `None` to mark a sample that cannot be scored. Completions are model outputs, so
everything here treats them as hostile: answer extraction is a linear scan, and all SymPy work (parsing and
verification with math-verify) runs in worker processes under a hard per-item time limit
(see [`~dsdr_trl._time_limit.run_with_time_limit`]).
"""

from __future__ import annotations

import functools
import importlib
import numbers
import re
import threading
import warnings
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from cachetools import FIFOCache, LRUCache

from ._time_limit import Outcome, run_with_time_limit, verifier_workers
from .formulas import completion_text

__all__ = [
    "ANSWER_EXTRACTION",
    "REWARD_FUNCS",
    "accuracy_reward",
    "extract_answer",
    "get_reward_func",
    "make_accuracy_reward",
    "number_text",
    "verifier_workers",
]

# How the final answer is found in a completion (see `extract_answer`): "lenient" falls back to an `Answer:` line, the
# last math span or the last number when there is no `\boxed{}`; "strict" reads `\boxed{}` only, as TRL's and
# lighteval's math verifiers do.
ANSWER_EXTRACTION = ("lenient", "strict")

# Wall-time limit for parsing and verifying one completion (and for checking one reference). Ordinary answers take
# a few milliseconds; an answer that overruns (e.g. a tower of powers that sympy tries to evaluate) scores 0.0.
# 1.5 s plus noticing the overrun (within 0.1 s) and killing the worker keeps a hostile completion's cost under 2 s.
VERIFY_TIME_LIMIT_SECONDS = 1.5

# An extracted answer longer than this is scored 0.0 without being parsed: no legitimate final answer is that long,
# and sympy's cost grows quickly with the size of the expression.
MAX_ANSWER_CHARS = 1_000

# Only the end of a completion is searched for its answer; this bounds the extraction cost of a runaway generation.
MAX_SCAN_CHARS = 200_000

# One token per regex match: an escaped backslash or brace (skipped), the opening of `\boxed{`/`\fbox{`, or a plain
# brace. Every alternative is anchored by a literal, so matching is linear in the text length.
_BOX_TOKENS = re.compile(r"(\\\\|\\[{}])|(\\(?:boxed|fbox)\s*\{)|(\{)|(\})")
_ANSWER_LABEL = re.compile(r"\banswer\s*:", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")
_MATH_DELIMITERS = ("$", "\\(", "\\[", "\\boxed", "\\fbox")

# Items that overran the time limit (the 4,096 latest): a reference check `(reference, None)` or a pair `(reference,
# answer)`. They are not sent again, so that each costs the limit once per process rather than once per call.
_overran: FIFOCache[tuple[str, str | None], None] = FIFOCache(maxsize=4_096)
_overran_lock = threading.Lock()


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    # A forward scan keeps the cost linear; searching backwards from each candidate start could be quadratic.
    last = None
    for match in pattern.finditer(text):
        last = match
    return last


def _last_boxed(text: str) -> str | None:
    """Content of the `\\boxed{...}`/`\\fbox{...}` whose closing brace comes last, braces matched in one pass."""
    # For each open brace: the index where the box content starts if the brace opens a box, else -1.
    open_braces: list[int] = []
    last: tuple[int, int] | None = None
    for match in _BOX_TOKENS.finditer(text):
        kind = match.lastindex
        if kind == 2:
            open_braces.append(match.end())
        elif kind == 3:
            open_braces.append(-1)
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
    rest = text[label.end() :]
    line, _, following = rest.partition("\n")
    if not line.strip(" \t*"):
        line = next((candidate for candidate in following.split("\n", 8) if candidate.strip()), "")
    return line


def _last_math_span(text: str) -> tuple[int, str] | None:
    """Last complete `$...$`/`$$...$$`, `\\(...\\)` or `\\[...\\]` span as `(end offset, content)`."""
    spans: list[tuple[int, str]] = []
    # `\$` is a literal dollar sign; blank it out (same length, so offsets stay valid) before pairing delimiters.
    # `$$` becomes one `$` placed where the closing one of a pair ends, keeping offsets exact.
    dollars = text.replace("\\$", "  ").replace("$$", " $")
    pieces = dollars.split("$")
    # Pieces at odd indices lie between a pair of `$`; the last piece is unterminated when the count of `$` is odd.
    offset = 0
    end_of_last_pair = None
    content_of_last_pair = None
    for index, piece in enumerate(pieces[:-1]):
        offset += len(piece) + 1
        if index % 2 == 1 and piece.strip():
            end_of_last_pair, content_of_last_pair = offset, piece
    if content_of_last_pair is not None and end_of_last_pair is not None:
        spans.append((end_of_last_pair, content_of_last_pair))
    for opening, closing in (("\\(", "\\)"), ("\\[", "\\]")):
        close = text.rfind(closing)
        if close > 0:
            open_ = text.rfind(opening, 0, close)
            if open_ >= 0:
                spans.append((close + len(closing), text[open_ + len(opening) : close]))
    return max(spans, default=None)


def _last_number(text: str) -> tuple[int, str] | None:
    last = _last_match(_NUMBER, text)
    return None if last is None else (last.end(), last.group())


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
    Extracts the final answer from a model completion.

    `"lenient"`, in order of preference: the content of the last `\boxed{...}` (or `\fbox{...}`), braces matched; the
    rest of the last `Answer: ...` line (the format DAPO-Math-17k prompts ask for); the last math span (`$...$`,
    `\(...\)`, `\[...\]`) or the last number, whichever ends later. `"strict"`: the last `\boxed{...}` only, as TRL's
    and lighteval's verifiers read completions. Only the last [`MAX_SCAN_CHARS`] characters are searched and every
    step is linear in their length, so any input is safe.

    Args:
        text (`str`):
            The completion text.
        answer_extraction (`str`, *optional*, defaults to `"lenient"`):
            One of [`ANSWER_EXTRACTION`].

    Returns:
        `str` or `None`: The answer with surrounding whitespace, markdown emphasis and a trailing period removed, or
        `None` if nothing answer-like was found.

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
    if answer_extraction == "strict":
        boxed = _last_boxed(text)
        return (_clean_answer(boxed) or None) if boxed is not None else None
    for extracted in (_last_boxed(text), _last_answer_line(text)):
        if extracted is not None and (cleaned := _clean_answer(extracted)):
            return cleaned
    candidates = [candidate for candidate in (_last_math_span(text), _last_number(text)) if candidate is not None]
    if not candidates:
        return None
    return _clean_answer(max(candidates)[1]) or None


def number_text(value: Any) -> str | None:
    """
    A number as a reference answer: positional decimal digits, never an exponent, of any size.

    `str(1e20)` is `1e+20` and `str(0.00001)` is `1e-05`, which math-verify reads as expressions in Euler's number;
    written positionally (`100000000000000000000`, `0.00001`) they are the numbers they stand for. Floats keep the
    shortest digits that round-trip in their own precision (`numpy.float32(0.1)` is `0.1`), and an integral value
    loses its `.0` (`3.0` is `3`, as an integer column writes it; math-verify takes `3` and `3.0` as equal). Integers
    are written through `Decimal`, which has no limit on their digits (`str` refuses more than 4,300).

    Args:
        value (`Any`):
            Python and NumPy integers and floats (any width) and `Decimal` are numbers; `bool` (and `numpy.bool_`) is
            not.

    Returns:
        `str | None`: The text, `None` for NaN, an infinity or anything that is not a number.

    Example:

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
    if exact.is_zero():
        return "0"
    text = format(exact, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# ---------------------------------------------------------------------------------------------------------------------
# From here to `accuracy_reward`: what runs in the worker processes, which have imported math-verify on start.

_PROBE = "0"  # a reference whose comparison with a plain number overruns would overrun with every answer
_parsed_golds: LRUCache[str, list] = LRUCache(maxsize=4_096)


@functools.cache
def _configs() -> tuple[list, list]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return [LatexExtractionConfig()], [LatexExtractionConfig(), ExprExtractionConfig()]


def _parse_math(text: str, config: list) -> list:
    """Parses `text`, wrapping it in `\\boxed{}` first when it has no math delimiters (math-verify's LaTeX extraction
    finds nothing in bare LaTeX like `\\frac{\\sqrt{3}}{2}`), then trying it as is with `config`."""
    import math_verify

    attempts = [text] if any(delimiter in text for delimiter in _MATH_DELIMITERS) else [f"\\boxed{{{text}}}", text]
    for attempt in attempts:
        parsed = math_verify.parse(attempt, config, parsing_timeout=None)
        if parsed:
            return parsed
    return []


def _parse_gold(gold: str) -> list:
    """The parsed reference, once compared with a plain number: a reference whose every comparison would overrun
    (`9^{9^{9^{9}}}`, `(10^{9})!`) overruns here, in its own check, rather than in each of its answers'."""
    import math_verify

    if gold not in _parsed_golds:
        latex_only, latex_or_expr = _configs()
        parsed = _parse_math(gold, latex_only) or _parse_math(gold, latex_or_expr)
        if parsed:
            math_verify.verify(parsed, _parse_math(_PROBE, latex_or_expr), timeout_seconds=None)
        _parsed_golds[gold] = parsed
    return _parsed_golds[gold]


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


# ---------------------------------------------------------------------------------------------------------------------


def _gold_text(solution: Any) -> str | None:
    """The reference as text; `None` (not scored) when empty, not text or a number, or longer than any answer that is
    parsed may be (a 5,000-digit number, for instance)."""
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


def _accuracy(
    completions: list[Any], solution: list[Any], answer_extraction: str, **kwargs: Any
) -> list[float | None]:
    golds = [_gold_text(gold) for gold in solution]
    if len(golds) != len(completions):
        raise ValueError(
            f"Got {len(completions)} completions but {len(golds)} solutions; expected one per completion."
        )
    # References go first, in their own batch, so that the answers of an unusable (or overrunning) reference are not
    # sent at all: each would check that reference again and could overrun again.
    distinct_golds = [gold for gold in dict.fromkeys(golds) if gold is not None]
    gold_outcomes = dict(zip(distinct_golds, _verify_items([(gold, None) for gold in distinct_golds]), strict=True))

    rewards: list[float | None] = [None] * len(completions)
    # Each distinct (gold, answer) pair is verified once; `pairs` maps it to the rows that share it.
    pairs: dict[tuple[str, str], list[int]] = {}
    timeouts = failures = 0
    failure_reasons = [outcome.value for outcome in gold_outcomes.values() if outcome.status == "unavailable"]
    for index, (completion, gold) in enumerate(zip(completions, golds, strict=True)):
        gold_outcome = gold_outcomes.get(gold)  # None: no reference
        if gold_outcome is None or gold_outcome.status != "ok" or not gold_outcome.value:
            if gold_outcome is not None:
                timeouts += gold_outcome.status == "timeout"
                failures += gold_outcome.status == "unavailable"
            continue
        rewards[index] = 0.0
        try:
            text = completion_text(completion)
            answer = extract_answer(text, answer_extraction) if text is not None else None
        except Exception:
            answer = None
        if answer is not None and len(answer) <= MAX_ANSWER_CHARS:
            pairs.setdefault((gold, answer), []).append(index)
    for rows, outcome in zip(pairs.values(), _verify_items(list(pairs)), strict=True):
        for index in rows:
            # An overrun or an error scores 0.0 (already set); a pair the pool could not run is not scored.
            if outcome.status == "ok":
                rewards[index] = outcome.value
            elif outcome.status == "unavailable":
                rewards[index] = None
        timeouts += len(rows) * (outcome.status == "timeout")
        failures += len(rows) * (outcome.status == "unavailable")
        if outcome.status == "unavailable":
            failure_reasons.append(outcome.value)

    if failures:
        warnings.warn(
            f"The verifier's worker pool could not score {failures} of {len(completions)} completions "
            f"({failure_reasons[0]}); their rewards are None. The next call starts a new pool.",
            RuntimeWarning,
            stacklevel=3,
        )
    log_metric = kwargs.get("log_metric")
    if callable(log_metric):
        log_metric("dsdr/verifier_timeouts", float(timeouts))
        log_metric("dsdr/verifier_failures", float(failures))
    return rewards


def accuracy_reward(completions: list[Any], solution: list[Any], **kwargs: Any) -> list[float | None]:
    r"""
    Scores 1.0 for a completion whose final answer is mathematically equivalent to the reference, else 0.0.

    The answer is found with [`extract_answer`] and compared with math-verify (`verify(gold, prediction)`). A bare
    reference such as `34` or `\frac{1}{2}` works, as does one wrapped in `$...$` or `\boxed{}`; a number is written
    with [`number_text`]. Parsing and verification run in worker processes (one per core by default, see
    [`verifier_workers`]) with a hard limit of [`VERIFY_TIME_LIMIT_SECONDS`] per item, so this is safe to call from
    any thread and on any text: an overrun, an answer longer than [`MAX_ANSWER_CHARS`], non-text content and any
    error score 0.0. Each distinct (reference, answer) pair is verified once per call, and an item that overran is
    remembered, so that it costs the limit once per process. It never raises for a problem of the pool: rows the pool
    could not score get `None`, with a `RuntimeWarning`.

    Two ways to find the answer, chosen with [`make_accuracy_reward`] (this function is the lenient one):

    | `answer_extraction` | the answer is | `Answer: 5` against `5` |
    |---|---|---|
    | `"lenient"` (this function) | the last `\boxed{}`, else the last `Answer:` line, else the last math span or number | 1.0 |
    | `"strict"` | the last `\boxed{}` only, as TRL's `accuracy_reward` and lighteval read completions | 0.0 |

    Lenient scores are higher than TRL's or lighteval's on the same completions; compare them with `"strict"` ones.

    Args:
        completions (`list[str]` or `list[list[dict[str, str]]]`):
            Model completions: strings, or conversations whose last message's `"content"` is scored.
        solution (`list[str]`):
            Reference answer for each completion (the dataset's `solution` column, repeated per generation).
        **kwargs:
            Other columns and trainer-provided arguments. If `log_metric` is given, the number of completions that were
            not scored because an item overran the time limit (now or in an earlier call) is logged as
            `dsdr/verifier_timeouts`, and the number the pool could not score as `dsdr/verifier_failures`.

    Returns:
        `list[float | None]`: One reward per completion; `None` where the reference itself cannot be parsed or compared
        within the limit (named once in a `RuntimeWarning`), or the pool could not score the completion, so that the
        trainer skips the sample instead of treating it as wrong.

    Example:
    ```python
    >>> accuracy_reward([r"... so \boxed{\frac{1}{2}}", "Answer: 0.4"], solution=["0.5", "0.5"])
    [1.0, 0.0]
    ```
    """
    return _accuracy(completions, solution, "lenient", **kwargs)


def make_accuracy_reward(answer_extraction: str = "lenient") -> Callable[..., list[float | None]]:
    """
    [`accuracy_reward`] with the given way of finding the answer; its `__name__` stays `"accuracy_reward"`, the name
    TRL gives its metric.

    Args:
        answer_extraction (`str`, *optional*, defaults to `"lenient"`):
            One of [`ANSWER_EXTRACTION`] (see [`accuracy_reward`]).

    Raises:
        `ValueError`: If `answer_extraction` is not one of [`ANSWER_EXTRACTION`].
    """
    _check_extraction(answer_extraction)
    if answer_extraction == "lenient":
        return accuracy_reward

    @functools.wraps(accuracy_reward)
    def reward(completions: list[Any], solution: list[Any], **kwargs: Any) -> list[float | None]:
        return _accuracy(completions, solution, answer_extraction, **kwargs)

    return reward


def _trl_reward_funcs() -> dict[str, Callable[..., list[float | None]]]:
    """TRL's reward functions under the names `trl grpo --reward_funcs` accepts, built as TRL's script builds them."""
    from trl.rewards import (
        accuracy_reward as trl_accuracy_reward,
    )
    from trl.rewards import (
        get_soft_overlong_punishment,
        reasoning_accuracy_reward,
        think_format_reward,
    )

    return {
        "accuracy_reward": trl_accuracy_reward,
        "reasoning_accuracy_reward": reasoning_accuracy_reward,
        "think_format_reward": think_format_reward,
        # trl/scripts/grpo.py's values; `get_reward_func(..., max_completion_length=N)` scales them to the run.
        "get_soft_overlong_punishment": get_soft_overlong_punishment(max_completion_len=1280, soft_punish_cache=256),
    }


# Ours, then TRL's by their TRL names. `accuracy` (this module's verifier, time-limited and with `Answer:` lines) and
# TRL's `accuracy_reward` (math-verify on `\boxed{}`/LaTeX) share the function name `accuracy_reward`.
REWARD_FUNCS: dict[str, Callable[..., list[float | None]]] = {"accuracy": accuracy_reward, **_trl_reward_funcs()}


def get_reward_func(name: str, max_completion_length: int | None = None) -> Callable[..., list[float | None]]:
    """
    Resolves a reward function from a short name or a dotted import path.

    Args:
        name (`str`):
            A key of [`REWARD_FUNCS`] (`"accuracy"`, or TRL's `"accuracy_reward"`, `"reasoning_accuracy_reward"`,
            `"think_format_reward"`, `"get_soft_overlong_punishment"`), or a dotted path such as
            `"my_package.rewards.my_reward"`, imported from `sys.path` (the command line puts the working directory
            on it, as `trl grpo` does).
        max_completion_length (`int`, *optional*):
            The run's completion cap. When given, `get_soft_overlong_punishment` punishes the last fifth of it (TRL's
            own 256 of 1280) instead of TRL's fixed 1280-token window.

    Returns:
        `Callable`: The reward function.

    Raises:
        `ValueError`: If `name` is neither a known name nor an importable dotted path to a callable.
    """
    if name == "get_soft_overlong_punishment" and max_completion_length is not None:
        from trl.rewards import get_soft_overlong_punishment

        return get_soft_overlong_punishment(
            max_completion_len=max_completion_length, soft_punish_cache=max(1, max_completion_length // 5)
        )
    if name in REWARD_FUNCS:
        return REWARD_FUNCS[name]
    hint = f"Pass one of {sorted(REWARD_FUNCS)} or a dotted import path such as 'my_package.rewards.my_reward'."
    module_name, _, attribute = name.rpartition(".")
    if not module_name or not attribute:
        raise ValueError(f"Unknown reward function {name!r}. {hint}")
    try:
        func = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"Could not import reward function {name!r}: {error}. {hint}") from error
    if not callable(func):
        raise ValueError(f"{name!r} resolves to a {type(func).__name__}, not a callable reward function. {hint}")
    return func
