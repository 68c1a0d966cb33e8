"""The DSDR math as pure tensor functions, one per equation of the paper (arXiv 2602.19895), each with its shapes.

Torch in, torch out; nothing of trainers, accelerate or tokenizers. Rows of a group are consecutive: with `group_size`
G, rows `[k*G, (k+1)*G)` are the G completions of prompt k, as TRL's `RepeatSampler` lays out a gathered batch.
`group_advantages` is GRPO's group z-score with the ε of the std exposed, since DSDR's bonus in an all-correct group
is of the order λ_d and an ε of the same order would swallow it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from trl.trainer.utils import nanstd


def _check_groups(num_rows: int, group_size: int) -> None:
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1, got {group_size}.")
    if num_rows % group_size != 0:
        raise ValueError(
            f"The batch has {num_rows} rows, which is not a multiple of group_size={group_size}. Rows of a group "
            "must be consecutive and every group complete."
        )


def pairwise_distance(embeddings: torch.Tensor) -> torch.Tensor:
    """`s_ij = (1 - cos(e_i, e_j)) / 2` between every pair of rows (Eq. 5), zero on the diagonal.

    `embeddings (..., M, D)` (normalised here, so raw encoder outputs are fine) -> `(..., M, M)` float32 in [0, 1].
    """
    e = F.normalize(embeddings.float(), dim=-1)
    distance = ((1.0 - e @ e.transpose(-1, -2)) / 2.0).clamp(0.0, 1.0)
    # The diagonal is 0 in exact arithmetic; zero it so rounding cannot leak into a mean.
    size = e.shape[-2]
    return distance * (1.0 - torch.eye(size, device=e.device, dtype=e.dtype))


def semantic_diversity(embeddings: torch.Tensor, group_size: int, among: torch.Tensor | None = None) -> torch.Tensor:
    """`S_i = (1/(G-1)) Σ_{j≠i} s_ij`, the mean distance to the other members of the group (Eq. 5–6).

    `embeddings (N, D)`, `group_size` G ≥ 2 -> `(N,)` float32 in [0, 1]. `among (N,)` bool, optional (our option, not
    the paper's reading): compare only with the members it marks, e.g. the correct ones; no other marked member gives 0.
    """
    num_rows = embeddings.shape[0]
    _check_groups(num_rows, group_size)
    if group_size < 2:
        raise ValueError("semantic_diversity needs at least 2 completions per group.")
    distance = pairwise_distance(embeddings.view(-1, group_size, embeddings.shape[-1]))  # (Q, G, G)
    if among is None:
        return (distance.sum(dim=-1) / (group_size - 1)).reshape(num_rows)
    marked = among.to(distance.dtype).view(-1, 1, group_size)  # column j counts iff j is marked
    others = marked.sum(dim=-1, keepdim=True) - marked.transpose(-1, -2)  # (Q, G, 1): marked members other than i
    return ((distance * marked).sum(dim=-1, keepdim=True) / others.clamp(min=1)).reshape(num_rows)


def formula_uniqueness(
    formulas: Sequence[frozenset[str]], group_size: int, among: torch.Tensor | None = None
) -> torch.Tensor:
    """`U_i = |F_i \\ ∪_{j≠i} F_j| / |F_i|`, the share of i's formulas no other member uses (Eq. 7–8).

    `formulas` (N frozensets, see `dsdr_trl.formulas.extract_formulas`), `group_size` -> `(N,)` float32 in [0, 1];
    0 for a completion without formulas. `among (N,)` bool, optional (our option): only the members it marks count as
    other members; no other marked member gives 0.
    """
    _check_groups(len(formulas), group_size)
    marked = [True] * len(formulas) if among is None else [bool(m) for m in among.tolist()]
    scores = []
    for start in range(0, len(formulas), group_size):
        group, counted = formulas[start : start + group_size], marked[start : start + group_size]
        # Each completion counts a formula once: a formula is unique to i iff no other counted member has it.
        owners = Counter(f for member, keep in zip(group, counted, strict=True) if keep for f in member)
        for member, keep in zip(group, counted, strict=True):
            if among is not None and sum(counted) - keep == 0:
                scores.append(0.0)
                continue
            unique = sum(1 for f in member if owners[f] == keep)  # owned by i alone (i counts itself if marked)
            scores.append(unique / len(member) if member else 0.0)
    return torch.tensor(scores, dtype=torch.float32)


def measured_uniqueness(
    measure: Callable[..., Sequence[float]], texts: Sequence[str | None], prompts: Sequence[Any], group_size: int
) -> torch.Tensor:
    """A task's own measure in place of U_i (`DSDRConfig.diversity_fn`), called once per group.

    `measure(completions, prompt=prompt)` gets the G texts of a group and returns G scores in [0, 1]. `texts` (N; a
    group holding a `None` is not measured and scores 0), `prompts` (N), `group_size` -> `(N,)` float32 in [0, 1].
    """
    _check_groups(len(texts), group_size)
    scores = torch.zeros(len(texts), dtype=torch.float32)
    for start in range(0, len(texts), group_size):
        group = texts[start : start + group_size]
        if any(text is None for text in group):
            continue
        values = torch.tensor([float(v) for v in measure(list(group), prompt=prompts[start])], dtype=torch.float32)
        if values.shape != (group_size,) or not bool(((values >= 0) & (values <= 1)).all()):
            name = getattr(measure, "__name__", repr(measure))
            raise ValueError(
                f"diversity_fn {name} must return {group_size} scores in [0, 1] for a group of {group_size} "
                f"completions, got {values.tolist()}."
            )
        scores[start : start + group_size] = values
    return scores


def diversity_score(semantic: torch.Tensor, uniqueness: torch.Tensor, formula_weight: float = 0.5) -> torch.Tensor:
    """`g_i = (1 - w) · S_i + w · U_i` (Eq. 9 with `w = 1/2`). Shapes `(N,)`, `(N,)` -> `(N,)`."""
    return (1.0 - formula_weight) * semantic + formula_weight * uniqueness


def clip_score(scores: torch.Tensor, clip: float) -> torch.Tensor:
    """`ĝ_i = clip(g_i, 0, σ_d)` (Eq. 10). Shape `(N,)` -> `(N,)`."""
    return scores.clamp(0.0, clip)


def diversity_bonus(scores: torch.Tensor, correct: torch.Tensor, coef: float, clip: float) -> torch.Tensor:
    """`b_i = λ_d · c_i · clip(g_i, 0, σ_d)` (Eq. 10).

    `scores (N,)` g, `correct (N,)` bool c, `coef` λ_d ≥ 0, `clip` σ_d > 0 -> `(N,)` in [0, λ_d·σ_d].
    """
    return coef * correct.to(scores.dtype) * clip_score(scores, clip)


def coupling_weights(
    clipped_scores: torch.Tensor, correct: torch.Tensor, group_size: int, temperature: float
) -> torch.Tensor:
    """`ω = softmax(τ·ĝ)` over the correct members of each group, 0 elsewhere (Eq. 11).

    `clipped_scores (N,)` ĝ, `correct (N,)` bool, `group_size`, `temperature` τ ≥ 0 (0: uniform over the correct
    members, the "w/o coupling" ablation) -> `(N,)`, summing to 1 over the correct rows of every group that has one.
    """
    _check_groups(clipped_scores.shape[0], group_size)
    correct = correct.bool().view(-1, group_size)
    logits = (temperature * clipped_scores.float()).view(-1, group_size)
    logits = logits.masked_fill(~correct, float("-inf"))
    # A group with no correct member has only -inf logits; softmax gives NaN there, replaced by 0.
    weights = torch.softmax(logits, dim=-1).nan_to_num(nan=0.0)
    return weights.masked_fill(~correct, 0.0).reshape(-1)


def sequence_entropy(per_token_entropy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Length-invariant `H̄_i = (1/T_i) Σ_t H_t` (Eq. 12–13).

    `per_token_entropy (B, T)` (exact or sampled, with gradient), `mask (B, T)` -> `(B,)`; 0 for an empty completion.
    """
    mask = mask.to(per_token_entropy.dtype)
    return (per_token_entropy * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)


def sampled_token_entropy(per_token_logps: torch.Tensor, old_per_token_logps: torch.Tensor) -> torch.Tensor:
    """The paper's estimate `H_t ≈ -ρ_t · log π_θ(y_t)`, `ρ_t = π_θ(y_t) / π_old(y_t)` (Eq. 14).

    With `y_t ~ π_old` its expectation and that of its gradient are the exact entropy and its gradient.
    `per_token_logps (B, T)` with gradient, `old_per_token_logps (B, T)` -> `(B, T)`.
    """
    ratio = torch.exp(per_token_logps - old_per_token_logps.detach())
    return -ratio * per_token_logps


def importance_weighted(per_token_entropy: torch.Tensor, importance_ratio: torch.Tensor) -> torch.Tensor:
    """Token entropies times the sampler's importance ratio, as TRL weights its per-token policy loss.

    Under vLLM, Eq. 14's `y_t ~ π_old` holds only after re-weighting by `r = π_old / π_vLLM`, which TRL computes per
    token or per sequence, truncated or 0 where it masks; the local term gets the same ratios and masks.
    `per_token_entropy (B, T)`, `importance_ratio (B, T)` or `(B, 1)` -> `(B, T)`.
    """
    return per_token_entropy * importance_ratio.detach().to(per_token_entropy.dtype)


def local_entropy_objective(seq_entropy: torch.Tensor, weights: torch.Tensor, group_size: int) -> torch.Tensor:
    """`L_loc`, the mean over prompts of `Σ_i c_i ω_i H̄_i` (Eq. 15), to be maximised.

    A micro-batch of B rows holds B / G prompts' worth, so the value is `G · mean_b(w_b H̄_b)`: summed over equal
    micro-batches and divided by their count it equals one pass over the whole batch, however rows were shuffled.
    `seq_entropy (B,)`, `weights (B,)` c·ω, `group_size` G -> 0-dim.
    """
    return group_size * (weights.to(seq_entropy.dtype) * seq_entropy).mean()


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale_rewards: str = "group", epsilon: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO's `A_i = (r_i - mean_g r) / (std_g r + ε)` with ε exposed; `epsilon=1e-4` is TRL 1.16's, op for op.

    NaN rewards (unscorable rows) are left out of the statistics and get advantage 0. `rewards (N,)`, `group_size`,
    `scale_rewards` `"group"` | `"batch"` | `"none"`, `epsilon` -> `(advantages (N,), std (N,))`, the std used for
    scaling (per group for `"group"` and `"none"`).
    """
    _check_groups(rewards.shape[0], group_size)
    mean = torch.nanmean(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size, dim=0)
    if scale_rewards in ("group", "none"):
        if group_size > 1:
            std = nanstd(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size, dim=0)
        else:
            std = torch.zeros_like(rewards)
    elif scale_rewards == "batch":
        std = nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    else:
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale_rewards!r}.")
    advantages = rewards - mean
    if scale_rewards != "none":
        advantages = advantages / (std + epsilon)
    return torch.nan_to_num(advantages, nan=0.0), std
