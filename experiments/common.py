"""What the experiments share: sampling the toy policy freely or with a strategy forced, scoring and pass@k.

A strategy is forced by appending its first formula's left-hand side to the prompt (`47*6=` + `$40*6=` forces split),
so the policy completes that strategy's first step and goes on from there. A sample is correct when its boxed integer
equals the answer, which is what `accuracy_reward` decides on this task.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from dsdr_trl.generation import generate_samples
from dsdr_trl.metrics import pass_at_k
from dsdr_trl.rewards import extract_answer
from dsdr_trl.toy.task import Problem, solution_strategy, worked_solution


def forced_prefix(problem: Problem, strategy: str | None) -> str:
    """The start of `strategy`'s worked solution up to its first `=` (empty for free sampling)."""
    return "" if strategy is None else worked_solution(problem, strategy).split("=", 1)[0] + "="


def sample(
    model,
    tokenizer,
    problems: Sequence[Problem],
    num_samples: int,
    seed: int,
    strategy: str | None = None,
    temperature: float = 1.0,
    max_new_tokens: int = 48,
) -> list[list[str]]:
    """`num_samples` completions per problem at `temperature`, each with its forced prefix (if any) put back in front."""
    prefixes = [forced_prefix(p, strategy) for p in problems]
    generated = generate_samples(
        model,
        tokenizer,
        [p.prompt + prefix for p, prefix in zip(problems, prefixes, strict=True)],
        num_samples=num_samples,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        batch_size=512,
        seed=seed,
        show_progress=False,
    )
    return [[prefix + text for text in group] for prefix, group in zip(prefixes, generated, strict=True)]


def correctness(samples: Sequence[Sequence[str]], problems: Sequence[Problem]) -> list[list[bool]]:
    """Whether each sample's boxed integer is the problem's answer."""
    return [[extract_answer(t) == p.answer for t in group] for group, p in zip(samples, problems, strict=True)]


def mean_pass_at(k: int, flags: Sequence[Sequence[bool]]) -> float:
    """pass@k (unbiased estimator) averaged over problems."""
    return statistics.fmean(pass_at_k(len(group), sum(group), k) for group in flags)


def strategy_share(
    samples: Sequence[Sequence[str]], flags: Sequence[Sequence[bool]] | None = None
) -> dict[str, float]:
    """The share of each strategy (or `other`) among the samples, or among the correct ones if `flags` is given."""
    names = [
        solution_strategy(text) or "other"
        for p, group in enumerate(samples)
        for i, text in enumerate(group)
        if flags is None or flags[p][i]
    ]
    return {name: names.count(name) / len(names) for name in sorted(set(names))} if names else {}
