"""Metrics of an evaluation the way the DSDR paper reports them: pass@k, avg@N and the diversity of correct solutions.

    correct = score_samples(samples, solutions)                    # one verifier call per chunk of samples
    diversity = diversity_of_samples(samples, correct, encoder)    # per problem, optional
    result = summarize(samples, correct, ks=[1, 2, 4, 8, 16], diversity=diversity)
    print(result.to_markdown()); json.dump(result.to_dict(), f)

pass@k is the unbiased estimator of Chen et al. (2021) averaged over problems; avg@N the mean accuracy of all samples.
Sampling is in [`~dsdr_trl.generation`].
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DIVERSITY_METRICS", "SCORING_CHUNK", "EvaluationResult", "diversity_of_samples", "parse_ks", "pass_at_k"]
__all__ += ["evaluate_samples", "score_samples", "summarize"]

# Samples per reward-function call in `score_samples` (the progress bar moves every chunk).
SCORING_CHUNK = 512

# Per-problem diversity numbers, in the order tables show them.
DIVERSITY_METRICS = ("semantic_distance", "formula_unique_ratio", "distinct_answers", "distinct_correct")


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    r"""Unbiased pass@k `1 - C(n - c, k) / C(n, k)` from n = `num_samples` of which c = `num_correct` are correct
    (Chen et al., 2021), in exact integer arithmetic. `ValueError` unless `1 ≤ k ≤ n`, `0 ≤ c ≤ n`.

    ```python
    >>> pass_at_k(4, 1, 2)  # 1 - C(3, 2) / C(4, 2) = 1 - 3/6
    0.5
    ```
    """
    n, c = int(num_samples), int(num_correct)
    if k < 1:
        raise ValueError(f"k must be at least 1, got k={k}.")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}; raise num_samples or lower k.")
    if not 0 <= c <= n:
        raise ValueError(f"num_correct must lie in [0, num_samples={n}], got {c}.")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)  # C(n - c, k) = 0 when every draw holds a correct sample


def parse_ks(
    ks: str | int | Sequence[int], num_samples: int | None = None, samples_name: str = "num_samples"
) -> list[int]:
    """The k of pass@k from `"1,2,4"`, an int or ints, sorted and distinct; `ValueError` on a bad k or one above
    `num_samples` (when given), whose message calls it `samples_name` (the caller's field)."""
    if isinstance(ks, str):
        ks = [item for item in ks.replace(" ", "").split(",") if item]
    try:
        values = {int(item) for item in ([ks] if isinstance(ks, int) else ks)}
    except (TypeError, ValueError):
        raise ValueError(
            f"k must be a comma-separated list of positive integers such as '1,2,4', got {ks!r}."
        ) from None
    if not values:
        raise ValueError("Give at least one k, e.g. '1'.")
    if min(values) < 1:
        raise ValueError(f"Every k must be at least 1, got {min(values)}.")
    if num_samples is not None and max(values) > num_samples:
        raise ValueError(
            f"pass@{max(values)} needs at least {max(values)} samples per problem, but {samples_name} is {num_samples}. "
            f"Lower k or raise {samples_name} to at least {max(values)}."
        )
    return sorted(values)


def score_samples(
    samples: Sequence[Sequence[str]],
    solutions: Sequence[str],
    reward_func: Callable[..., list[float | None]] | None = None,
    threshold: float = 0.5,
    show_progress: bool = False,
) -> list[list[bool]]:
    """Correctness flags shaped like `samples` (`samples[p]`: problem p's completions, `solutions[p]` its reference):
    a TRL-style `reward_func` (default [`~dsdr_trl.rewards.accuracy_reward`]) above `threshold`; `None` is incorrect.
    """
    if len(samples) != len(solutions):
        raise ValueError(f"Got {len(samples)} problems' samples but {len(solutions)} solutions.")
    if reward_func is None:
        from .rewards import accuracy_reward as reward_func
    from tqdm.auto import tqdm

    flat = [text for group in samples for text in group]
    repeated = [solution for group, solution in zip(samples, solutions, strict=True) for _ in group]
    rewards: list[float | None] = []
    with tqdm(total=len(flat), desc="Scoring", unit="sample", disable=not show_progress) as progress:
        for start in range(0, len(flat), SCORING_CHUNK):
            chunk = slice(start, start + SCORING_CHUNK)
            rewards += reward_func(completions=flat[chunk], solution=repeated[chunk])
            progress.update(len(flat[chunk]))
    flags = iter(reward is not None and not math.isnan(reward) and reward > threshold for reward in rewards)
    return [list(itertools.islice(flags, len(group))) for group in samples]


def diversity_of_samples(
    samples: Sequence[Sequence[str]],
    correct: Sequence[Sequence[bool]],
    encoder: Any | None = None,
    canonicalize: str = "none",
    batch_size: int = 64,
) -> list[dict[str, float | int | None]]:
    r"""Diversity of each problem's samples at DSDR's two scales, one dict per problem (F_i: sample i's formulas,
    compared as `canonicalize`):

    - `semantic_distance`: mean `(1 - cos(e_i, e_j)) / 2` over pairs of correct samples (Eq. 5) embedded by `encoder`;
      `None` with fewer than 2 correct samples or without an encoder;
    - `formula_unique_ratio`: `|∪_i F_i| / Σ_i |F_i|` over all samples, `None` without formulas;
    - `distinct_answers`: distinct final answers over all samples;
    - `distinct_correct`: distinct formula sets among the correct samples.
    """
    from .diversity import pairwise_distance
    from .encoder import embed
    from .formulas import extract_formulas_batch
    from .rewards import extract_answer

    if len(samples) != len(correct):
        raise ValueError(f"Got {len(samples)} problems' samples but {len(correct)} rows of correctness flags.")
    flat = [text for group in samples for text in group]
    formula_sets = extract_formulas_batch(flat, canonicalize=canonicalize)

    # Only correct samples of problems with at least two of them are embedded, in one encoder call.
    to_embed = [
        text
        for group, flags in zip(samples, correct, strict=True)
        if sum(map(bool, flags)) >= 2
        for text, ok in zip(group, flags, strict=True)
        if ok
    ]
    embeddings = embed(encoder, to_embed, batch_size) if encoder is not None and to_embed else None

    results, start, embedded = [], 0, 0
    for group, flags in zip(samples, correct, strict=True):
        if len(group) != len(flags):
            raise ValueError(f"A problem has {len(group)} samples but {len(flags)} correctness flags.")
        sets = formula_sets[start : start + len(group)]
        start += len(group)
        total = sum(len(formulas) for formulas in sets)
        answers = {answer for answer in map(extract_answer, group) if answer is not None}
        num_correct = sum(map(bool, flags))

        semantic = None
        if num_correct >= 2:
            if embeddings is not None:
                distance = pairwise_distance(embeddings[embedded : embedded + num_correct])  # (C, C)
                semantic = float(distance.sum() / (num_correct * (num_correct - 1)))  # the diagonal is 0
            embedded += num_correct
        results.append(
            {
                "semantic_distance": semantic,
                "formula_unique_ratio": len(set().union(*sets)) / total if total else None,
                "distinct_answers": len(answers),
                "distinct_correct": len({frozenset(f) for f, ok in zip(sets, flags, strict=True) if ok}),
            }
        )
    return results


def _mean(values: Sequence[float | int | None]) -> float | None:
    defined = [float(v) for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(defined) if defined else None


@dataclass
class EvaluationResult:
    """An evaluation: the `ks` of pass@k, one record per problem with at least `num_samples` and `num_correct`, and
    `metadata` on how the samples were produced (`to_dict()["config"]`)."""

    ks: list[int]
    per_problem: list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        """Samples per problem (the smallest, if problems differ)."""
        return min((p["num_samples"] for p in self.per_problem), default=0)

    @property
    def pass_at_k(self) -> dict[int, float]:
        """pass@k for each k, averaged over problems."""
        n = len(self.per_problem)
        return {
            k: sum(pass_at_k(p["num_samples"], p["num_correct"], k) for p in self.per_problem) / n if n else 0.0
            for k in self.ks
        }

    @property
    def avg_accuracy(self) -> float:
        """Mean accuracy of all samples (avg@N)."""
        total = sum(p["num_samples"] for p in self.per_problem)
        return sum(p["num_correct"] for p in self.per_problem) / total if total else 0.0

    @property
    def diversity(self) -> dict[str, float | None]:
        """Means over problems of each diversity number, skipping problems where it is undefined."""
        return {
            name: _mean([p.get(name) for p in self.per_problem])
            for name in DIVERSITY_METRICS
            if any(name in p for p in self.per_problem)
        }

    def metrics(self) -> dict[str, float]:
        """The aggregate numbers as a flat `name -> float` mapping (undefined ones left out), for loggers."""
        out = {f"pass@{k}": value for k, value in self.pass_at_k.items()}
        out[f"avg@{self.num_samples}"] = self.avg_accuracy
        out.update({name: value for name, value in self.diversity.items() if value is not None})
        return out

    @property
    def standard_errors(self) -> dict[str, float | None]:
        """Standard error `std / sqrt(P)` over the P problems of each pass@k and of avg@N (per-problem `c_i / n_i`,
        ignoring the noise within a problem, as benchmark error bars do); `None` below 2 problems."""

        def stderr(values: list[float]) -> float | None:
            return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None

        out = {
            f"pass@{k}": stderr([pass_at_k(p["num_samples"], p["num_correct"], k) for p in self.per_problem])
            for k in self.ks
        }
        out[f"avg@{self.num_samples}"] = stderr([p["num_correct"] / p["num_samples"] for p in self.per_problem])
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: aggregates, their standard errors, `config` and `per_problem` (undefined: `null`)."""
        return {
            "num_problems": len(self.per_problem),
            "num_samples": self.num_samples,
            "pass@k": {str(k): value for k, value in self.pass_at_k.items()},
            f"avg@{self.num_samples}": self.avg_accuracy,
            "stderr": self.standard_errors,
            "diversity": self.diversity,
            "config": dict(self.metadata),
            "per_problem": [dict(p) for p in self.per_problem],
        }

    def to_markdown(self) -> str:
        """A one-row markdown table of the aggregate numbers, in percent except the counts."""
        columns = [(f"pass@{k}", 100 * v) for k, v in self.pass_at_k.items()]
        columns.append((f"avg@{self.num_samples}", 100 * self.avg_accuracy))
        for name, value in self.diversity.items():
            scale = 100 if name in ("semantic_distance", "formula_unique_ratio") else 1
            columns.append((name, None if value is None else scale * value))
        header = "| problems | " + " | ".join(name for name, _ in columns) + " |"
        rule = "|---:|" + "---:|" * len(columns)
        cells = ["–" if value is None else f"{value:.2f}" for _, value in columns]
        row = f"| {len(self.per_problem)} | " + " | ".join(cells) + " |"
        return "\n".join([header, rule, row])


def summarize(
    samples: Sequence[Sequence[str]],
    correct: Sequence[Sequence[bool]],
    ks: Sequence[int],
    diversity: Sequence[dict[str, Any]] | None = None,
    extra: Sequence[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
) -> EvaluationResult:
    """An [`EvaluationResult`] of scored samples; `diversity` ([`diversity_of_samples`]) and `extra` are merged into
    each problem's record. Inputs of different lengths and a k above the samples raise `ValueError`."""
    if len(samples) != len(correct):
        raise ValueError(f"Got {len(samples)} problems' samples but {len(correct)} rows of correctness flags.")
    for other, name in ((diversity, "diversity"), (extra, "extra")):
        if other is not None and len(other) != len(samples):
            raise ValueError(f"{name} has {len(other)} entries for {len(samples)} problems.")
    per_problem = []
    for index, flags in enumerate(correct):
        record: dict[str, Any] = dict(extra[index]) if extra is not None else {}
        record["num_samples"] = len(flags)
        record["num_correct"] = int(sum(map(bool, flags)))
        if diversity is not None:
            record.update(diversity[index])
        per_problem.append(record)
    smallest = min((p["num_samples"] for p in per_problem), default=None)
    return EvaluationResult(ks=parse_ks(ks, smallest), per_problem=per_problem, metadata=dict(metadata or {}))


def evaluate_samples(
    samples: Sequence[Sequence[str]],
    solutions: Sequence[Any],
    ks: Sequence[int],
    encoder: Any | None = None,
    reward_func: Callable[..., list[float | None]] | None = None,
    show_progress: bool = False,
    keep_samples: bool = False,
    metadata: dict[str, Any] | None = None,
) -> EvaluationResult:
    """[`score_samples`] → [`diversity_of_samples`] → [`summarize`]: each problem's record holds its reference as
    `solution` and, with `keep_samples=True`, its `samples` and their `correct` flags."""
    from .rewards import number_text

    correct = score_samples(samples, solutions, reward_func, show_progress=show_progress)
    diversity = diversity_of_samples(samples, correct, encoder)
    extra = [{"solution": number_text(solution) or str(solution)} for solution in solutions]
    if keep_samples:
        for record, group, flags in zip(extra, samples, correct, strict=True):
            record.update(samples=list(group), correct=list(flags))
    return summarize(samples, correct, ks, diversity=diversity, extra=extra, metadata=metadata)
