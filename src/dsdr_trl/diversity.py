"""The DSDR math as pure tensor functions.

Every function here is torch in, torch out, and knows nothing of trainers, accelerate or tokenizers, so each
equation of the paper (Wan et al., arXiv 2602.19895) can be checked on hand-built tensors. Rows of a group are
consecutive: with `group_size` G and N rows, rows `[k*G, (k+1)*G)` are the G completions of prompt k, which is how
TRL's `RepeatSampler` lays out a generation batch after gathering.

Global scale (Eq. 4–10):
    s_ij = (1 - e_i·e_j) / 2                     `pairwise_distance` of normalised embeddings
    S_i  = mean_{j≠i in group} s_ij               `semantic_diversity`
    U_i  = |F_i \\ ∪_{j≠i} F_j| / |F_i|          `formula_uniqueness` (0 when F_i is empty)
    g_i  = (S_i + U_i) / 2                       `diversity_score`
    b_i  = λ_d · c_i · clip(g_i, 0, σ_d)          `diversity_bonus`, added to the reward of correct rows

Coupling (Eq. 11):
    ω_i = softmax_{j∈P}(τ ĝ_j)_i for correct i, 0 otherwise    `coupling_weights`

Local scale (Eq. 12–15):
    H̄_i  = (1/T_i) Σ_t H_t                        `sequence_entropy`
    H_t  ≈ -ρ_t log π_θ(y_t), ρ_t = π_θ/π_old      `sampled_token_entropy` (the paper's estimator)
    H_t  ← r_t · H_t, r = π_old/π_vLLM            `importance_weighted` (samples drawn by vLLM, as TRL weights them)
    L_loc = mean over prompts of Σ_i c_i ω_i H̄_i  `local_entropy_objective`

`group_advantages` is GRPO's group z-score with the ε of the std exposed, since DSDR's bonus in an all-correct
group is of the order λ_d and an ε of the same order would swallow it (see `DSDRConfig.advantage_epsilon`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _check_groups(num_rows: int, group_size: int) -> None:
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1, got {group_size}.")
    if num_rows % group_size != 0:
        raise ValueError(
            f"The batch has {num_rows} rows, which is not a multiple of group_size={group_size}. Rows of a group "
            "must be consecutive and every group complete."
        )


def pairwise_distance(embeddings: torch.Tensor) -> torch.Tensor:
    """Semantic distance `s_ij = (1 - cos(e_i, e_j)) / 2` between every pair of rows (Eq. 5), with a zero diagonal.

    Args:
        embeddings (`torch.Tensor` of shape `(..., M, D)`):
            Sentence embeddings; they are L2-normalised here, so raw encoder outputs are fine.

    Returns:
        `torch.Tensor` of shape `(..., M, M)`, float32, in [0, 1].
    """
    e = F.normalize(embeddings.float(), dim=-1)
    distance = ((1.0 - e @ e.transpose(-1, -2)) / 2.0).clamp(0.0, 1.0)
    # The diagonal is 0 in exact arithmetic; zero it so rounding cannot leak into a mean.
    size = e.shape[-2]
    return distance * (1.0 - torch.eye(size, device=e.device, dtype=e.dtype))


def semantic_diversity(embeddings: torch.Tensor, group_size: int, among: torch.Tensor | None = None) -> torch.Tensor:
    """Mean semantic distance of each completion to the other members of its group (Eq. 5–6).

    Args:
        embeddings (`torch.Tensor` of shape `(N, D)`):
            Sentence embeddings; they are L2-normalised here, so raw encoder outputs are fine.
        group_size (`int`):
            Completions per prompt (G ≥ 2).
        among (`torch.Tensor` of shape `(N,)`, bool, *optional*):
            Compare only with the members marked here (e.g. the correct ones; our option, not the paper's reading);
            a completion with no other marked member gets 0.

    Returns:
        `torch.Tensor` of shape `(N,)`, float32, in [0, 1]: `S_i = (1/(G-1)) Σ_{j≠i} (1 - cos(e_i, e_j)) / 2`.
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
    formulas: Sequence[set[str] | frozenset[str]], group_size: int, among: torch.Tensor | None = None
) -> torch.Tensor:
    """Fraction of each completion's formulas that no other member of its group uses (Eq. 7–8).

    Args:
        formulas (`Sequence[set[str]]` of length N):
            The normalised formula set F_i of each completion (see `dsdr_trl.formulas.extract_formulas`).
        group_size (`int`):
            Completions per prompt.
        among (`torch.Tensor` of shape `(N,)`, bool, *optional*):
            Only the members marked here count as "other members" (our option, not the paper's reading); a
            completion with no other marked member gets 0.

    Returns:
        `torch.Tensor` of shape `(N,)`, float32, in [0, 1]; 0 for a completion without formulas.
    """
    _check_groups(len(formulas), group_size)
    marked = [True] * len(formulas) if among is None else [bool(m) for m in among.tolist()]
    scores = []
    for start in range(0, len(formulas), group_size):
        group, counted = formulas[start : start + group_size], marked[start : start + group_size]
        # Each completion counts a formula once: a formula is unique to i iff no other counted member has it.
        owners = Counter(f for member, keep in zip(group, counted, strict=True) if keep for f in set(member))
        for member, keep in zip(group, counted, strict=True):
            if among is not None and sum(counted) - keep == 0:
                scores.append(0.0)
                continue
            unique = sum(1 for f in member if owners[f] == keep)  # owned by i alone (i counts itself if marked)
            scores.append(unique / len(member) if member else 0.0)
    return torch.tensor(scores, dtype=torch.float32)


def diversity_score(semantic: torch.Tensor, uniqueness: torch.Tensor) -> torch.Tensor:
    """`g_i = (S_i + U_i) / 2` (Eq. 9). Shapes `(N,)`, `(N,)` -> `(N,)`."""
    return (semantic + uniqueness) / 2.0


def clip_score(scores: torch.Tensor, clip: float) -> torch.Tensor:
    """`ĝ_i = clip(g_i, 0, σ_d)` (Eq. 10). Shape `(N,)` -> `(N,)`."""
    return scores.clamp(0.0, clip)


def diversity_bonus(scores: torch.Tensor, correct: torch.Tensor, coef: float, clip: float) -> torch.Tensor:
    """The reward bonus `λ_d · c_i · clip(g_i, 0, σ_d)` (Eq. 10).

    Args:
        scores (`torch.Tensor` of shape `(N,)`):
            Diversity scores g_i.
        correct (`torch.Tensor` of shape `(N,)`, bool):
            c_i; incorrect rows get no bonus.
        coef (`float`):
            λ_d ≥ 0.
        clip (`float`):
            σ_d > 0.

    Returns:
        `torch.Tensor` of shape `(N,)`, in [0, λ_d·σ_d].
    """
    return coef * correct.to(scores.dtype) * clip_score(scores, clip)


def coupling_weights(
    clipped_scores: torch.Tensor, correct: torch.Tensor, group_size: int, temperature: float
) -> torch.Tensor:
    """Softmax of `τ·ĝ` over the correct members of each group, 0 elsewhere (Eq. 11).

    Args:
        clipped_scores (`torch.Tensor` of shape `(N,)`):
            ĝ_i.
        correct (`torch.Tensor` of shape `(N,)`, bool):
            c_i.
        group_size (`int`):
            Completions per prompt.
        temperature (`float`):
            τ ≥ 0; 0 gives uniform weights over the correct members (the "w/o coupling" ablation).

    Returns:
        `torch.Tensor` of shape `(N,)`: ω, summing to 1 over the correct rows of every group that has one, and 0 on
        incorrect rows and in groups without a correct row.
    """
    _check_groups(clipped_scores.shape[0], group_size)
    correct = correct.bool().view(-1, group_size)
    logits = (temperature * clipped_scores.float()).view(-1, group_size)
    logits = logits.masked_fill(~correct, float("-inf"))
    # A group with no correct member has only -inf logits; softmax gives NaN there, replaced by 0.
    weights = torch.softmax(logits, dim=-1).nan_to_num(nan=0.0)
    return weights.masked_fill(~correct, 0.0).reshape(-1)


def sequence_entropy(per_token_entropy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Length-invariant per-completion entropy `H̄_i = (1/T_i) Σ_t H_t` (Eq. 12–13).

    Args:
        per_token_entropy (`torch.Tensor` of shape `(B, T)`):
            Token entropies (exact, or the sampled estimate of `sampled_token_entropy`), with gradient.
        mask (`torch.Tensor` of shape `(B, T)`):
            1 on completion tokens that count, 0 on padding.

    Returns:
        `torch.Tensor` of shape `(B,)`; 0 for a completion with no counted token.
    """
    mask = mask.to(per_token_entropy.dtype)
    return (per_token_entropy * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)


def sampled_token_entropy(per_token_logps: torch.Tensor, old_per_token_logps: torch.Tensor) -> torch.Tensor:
    """The paper's single-sample entropy estimate `H_t ≈ -ρ_t · log π_θ(y_t)`, `ρ_t = π_θ(y_t) / π_old(y_t)` (Eq. 14).

    With `y_t ~ π_old`, its expectation and the expectation of its gradient equal the exact entropy and its gradient.

    Args:
        per_token_logps (`torch.Tensor` of shape `(B, T)`):
            log π_θ(y_t), with gradient.
        old_per_token_logps (`torch.Tensor` of shape `(B, T)`):
            log π_old(y_t) of the sampling policy, without gradient.

    Returns:
        `torch.Tensor` of shape `(B, T)`.
    """
    ratio = torch.exp(per_token_logps - old_per_token_logps.detach())
    return -ratio * per_token_logps


def importance_weighted(per_token_entropy: torch.Tensor, importance_ratio: torch.Tensor) -> torch.Tensor:
    """Token entropies weighted by the importance ratio of the sampler, as TRL weights its per-token policy loss.

    When vLLM samples the completions, Eq. 14's `y_t ~ π_old` holds only after re-weighting by `r = π_old / π_vLLM`.
    TRL computes `r` per token `(B, T)` or per sequence `(B, 1)`, truncated or set to 0 where it masks a token or a
    sequence; multiplying by it gives the local term the same re-weighting and the same masks as the policy term.
    With every ratio equal to 1 the entropies are unchanged.

    Args:
        per_token_entropy (`torch.Tensor` of shape `(B, T)`):
            Token entropies (exact or sampled), with gradient.
        importance_ratio (`torch.Tensor` of shape `(B, T)` or `(B, 1)`):
            TRL's `importance_sampling_ratio`, without gradient.

    Returns:
        `torch.Tensor` of shape `(B, T)`.
    """
    return per_token_entropy * importance_ratio.detach().to(per_token_entropy.dtype)


def local_entropy_objective(seq_entropy: torch.Tensor, weights: torch.Tensor, group_size: int) -> torch.Tensor:
    """The local objective `L_loc`: mean over prompts of `Σ_i c_i ω_i H̄_i` (Eq. 15), to be maximised.

    A micro-batch of B rows holds `B / G` prompts' worth of rows, so the value is `G · mean_b(w_b H̄_b)`. Summing it
    over equal-sized micro-batches and dividing by their count gives the same number as one pass over the whole batch,
    however the rows were shuffled or split.

    Args:
        seq_entropy (`torch.Tensor` of shape `(B,)`):
            H̄_i.
        weights (`torch.Tensor` of shape `(B,)`):
            `c_i · ω_i` (0 on incorrect rows).
        group_size (`int`):
            Completions per prompt, G.

    Returns:
        0-dim `torch.Tensor`.
    """
    return group_size * (weights.to(seq_entropy.dtype) * seq_entropy).mean()


def _nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Bessel-corrected std ignoring NaNs; NaN where fewer than 2 values (TRL's `nanstd`, op for op)."""
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    variance = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(x), dim=dim, keepdim=True)
    correction = count / (count - 1)
    correction = torch.where(count > 1, correction, torch.full_like(correction, float("nan")))
    variance *= correction
    std = torch.sqrt(variance)
    return std.squeeze(dim) if dim is not None else std.squeeze()


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale_rewards: str = "group", epsilon: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO's group-normalised advantage `A_i = (r_i - mean_g r) / (std_g r + ε)` with ε exposed.

    It follows `trl.GRPOTrainer` (1.16) operation for operation, so `epsilon=1e-4` reproduces TRL's advantages
    exactly. NaN rewards (unscorable rows) are left out of the group statistics and get advantage 0.

    Args:
        rewards (`torch.Tensor` of shape `(N,)`):
            Summed (and, under DSDR, shaped) rewards.
        group_size (`int`):
            Completions per prompt.
        scale_rewards (`str`):
            `"group"` (per-group std), `"batch"` (std over the whole batch) or `"none"` (no division).
        epsilon (`float`):
            ε added to the std.

    Returns:
        `(advantages, std)`, both of shape `(N,)`; `std` is the std used for scaling (per group for `"group"` and
        `"none"`), for the zero-std statistics.
    """
    _check_groups(rewards.shape[0], group_size)
    mean = torch.nanmean(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size, dim=0)
    if scale_rewards in ("group", "none"):
        if group_size > 1:
            std = _nanstd(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size, dim=0)
        else:
            std = torch.zeros_like(rewards)
    elif scale_rewards == "batch":
        std = _nanstd(rewards).expand_as(rewards) if rewards.numel() > 1 else torch.zeros_like(rewards)
    else:
        raise ValueError(f"scale_rewards must be 'group', 'batch' or 'none', got {scale_rewards!r}.")
    advantages = rewards - mean
    if scale_rewards != "none":
        advantages = advantages / (std + epsilon)
    return torch.nan_to_num(advantages, nan=0.0), std
