"""The pure DSDR math against hand-computed values, and its invariants as property tests."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dsdr_trl import diversity as D

# ---------------------------------------------------------------------------------------------------------------
# Hand-computed values
# ---------------------------------------------------------------------------------------------------------------


def test_semantic_diversity_hand_computed():
    # Group of 3: e0 = e1 (same direction), e2 orthogonal. s01 = 0, s02 = s12 = 1/2.
    # S0 = (0 + 1/2)/2 = 1/4, S1 = 1/4, S2 = (1/2 + 1/2)/2 = 1/2.
    # Second group of 3: e3 = -e4 (s = 1), e5 orthogonal to both (s = 1/2).
    # S3 = (1 + 1/2)/2 = 3/4, S4 = 3/4, S5 = (1/2 + 1/2)/2 = 1/2.
    embeddings = torch.tensor(
        [[2.0, 0.0], [5.0, 0.0], [0.0, 3.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]  # scale must not matter
    )
    expected = torch.tensor([0.25, 0.25, 0.5, 0.75, 0.75, 0.5])
    torch.testing.assert_close(D.semantic_diversity(embeddings, group_size=3), expected)


def test_semantic_diversity_is_per_group():
    # The same rows regrouped as pairs give other scores: groups must not leak into each other.
    embeddings = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    torch.testing.assert_close(D.semantic_diversity(embeddings, 2), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(D.semantic_diversity(embeddings, 4), torch.tensor([1 / 3, 1 / 3, 1 / 3, 1.0]))


def test_formula_uniqueness_hand_computed():
    formulas = [
        {"x=2", "2x=4"},  # "x=2" shared with row 1, "2x=4" unique -> 1/2
        {"x=2"},  # shared -> 0
        set(),  # no formulas -> 0
        {"a+b", "c", "d"},  # next group: "a+b" shared with row 4, "c" with row 5, "d" unique -> 1/3
        {"a+b", "x=2"},  # "x=2" appears in the other group only -> unique here: 1/2
        {"c", "e"},  # "c" shared with row 3 -> 1/2
    ]
    expected = torch.tensor([0.5, 0.0, 0.0, 1 / 3, 0.5, 0.5])
    torch.testing.assert_close(D.formula_uniqueness(formulas, group_size=3), expected)


def test_diversity_bonus_hand_computed():
    scores = torch.tensor([0.2, 0.9, 0.5, -0.1])
    correct = torch.tensor([True, True, False, True])
    bonus = D.diversity_bonus(scores, correct, coef=0.1, clip=0.6)
    torch.testing.assert_close(bonus, torch.tensor([0.02, 0.06, 0.0, 0.0]))


def test_coupling_weights_hand_computed():
    clipped = torch.tensor([0.0, math.log(3.0), 0.7, 0.0, 0.2, 0.9])
    correct = torch.tensor([True, True, False, False, False, False])
    # τ = 1: exp(0) : exp(log 3) = 1 : 3 over the two correct rows; the second group has none correct.
    weights = D.coupling_weights(clipped, correct, group_size=3, temperature=1.0)
    torch.testing.assert_close(weights, torch.tensor([0.25, 0.75, 0.0, 0.0, 0.0, 0.0]))


def test_coupling_weights_large_temperature_is_argmax():
    clipped = torch.tensor([0.1, 0.3, 0.2, 0.9])
    correct = torch.tensor([True, True, True, False])
    weights = D.coupling_weights(clipped, correct, group_size=4, temperature=1e4)
    torch.testing.assert_close(weights, torch.tensor([0.0, 1.0, 0.0, 0.0]))


def test_sequence_entropy_is_length_invariant():
    per_token = torch.tensor([[1.0, 3.0, 9.0, 9.0], [2.0, 2.0, 2.0, 2.0]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    torch.testing.assert_close(D.sequence_entropy(per_token, mask), torch.tensor([2.0, 2.0]))
    # A row with no counted token contributes 0, not NaN.
    torch.testing.assert_close(D.sequence_entropy(per_token[:1], torch.zeros(1, 4)), torch.tensor([0.0]))


def test_local_entropy_objective_is_mean_over_prompts():
    # Two prompts, G = 2. Prompt 0: weights (0.25, 0.75), H̄ (4, 8) -> 7. Prompt 1: no correct -> 0. Mean -> 3.5.
    seq_entropy = torch.tensor([4.0, 8.0, 5.0, 6.0])
    weights = torch.tensor([0.25, 0.75, 0.0, 0.0])
    torch.testing.assert_close(D.local_entropy_objective(seq_entropy, weights, group_size=2), torch.tensor(3.5))


def test_local_entropy_objective_independent_of_micro_batching():
    # However the rows of a generation batch are shuffled and split into equal micro-batches, the mean of the
    # micro-batch values equals the whole-batch value (what gradient accumulation and DDP averaging compute).
    generator = torch.Generator().manual_seed(0)
    seq_entropy = torch.rand(24, generator=generator)
    correct = torch.rand(24, generator=generator) > 0.4
    weights = D.coupling_weights(torch.rand(24, generator=generator), correct, 4, 5.0)
    whole = D.local_entropy_objective(seq_entropy, weights, group_size=4)
    perm = torch.randperm(24, generator=generator)
    for num_chunks in (2, 3, 6):
        parts = [
            D.local_entropy_objective(seq_entropy[idx], weights[idx], group_size=4) for idx in perm.chunk(num_chunks)
        ]
        torch.testing.assert_close(torch.stack(parts).mean(), whole)


def test_group_advantages_matches_trl_formula():
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5, 0.5, float("nan"), 0.2])
    advantages, _ = D.group_advantages(rewards, group_size=4, scale_rewards="group", epsilon=1e-4)
    grouped = rewards.view(-1, 4)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(4)
    std = nanstd(grouped, dim=1).repeat_interleave(4)
    expected = torch.nan_to_num((rewards - mean) / (std + 1e-4), nan=0.0)
    assert torch.equal(advantages, expected)


def test_group_advantages_epsilon_matters_for_all_correct_groups():
    # An all-correct group shaped by λ_d = 1e-3: rewards 1 + 1e-3·ĝ with std ≈ 1e-4.
    rewards = 1.0 + 1e-3 * torch.tensor([0.1, 0.3, 0.2, 0.4], dtype=torch.float64)
    small_eps, std = D.group_advantages(rewards, 4, "group", epsilon=1e-6)
    trl_eps, _ = D.group_advantages(rewards, 4, "group", epsilon=1e-4)
    z = (rewards - rewards.mean()) / std
    torch.testing.assert_close(small_eps, z, rtol=2e-2, atol=0)  # nearly the full z-score
    assert trl_eps.abs().max() < 0.6 * small_eps.abs().max()  # TRL's 1e-4 shrinks it by about half


def test_epsilon_against_the_bonus_of_an_all_correct_group():
    # g of a real all-correct group of G = 8 (the default encoder's S and the formula uniqueness U of eight worked
    # solutions of 2x + 3 = 7): with λ_d = 1e-3 the rewards' std is about 1e-4, and ε of that order halves the
    # advantages (the measurement behind DSDRConfig.advantage_epsilon's docstring and its warning).
    g = torch.tensor([0.200, 0.108, 0.259, 0.329, 0.388, 0.413, 0.379, 0.333])
    rewards = 1.0 + D.diversity_bonus(g, torch.ones(8, dtype=torch.bool), coef=1e-3, clip=1.0)
    assert rewards.std().item() == pytest.approx(1.05e-4, rel=0.02)
    spread = {eps: D.group_advantages(rewards, 8, "group", eps)[0].std().item() for eps in (1e-6, 1e-4, 1e-3)}
    assert spread == pytest.approx({1e-6: 0.99, 1e-4: 0.51, 1e-3: 0.095}, abs=0.01)


def test_measured_uniqueness_calls_the_measure_per_group_and_checks_its_scores():
    calls = []

    def by_length(completions, prompt):
        calls.append(prompt)
        return [len(text) / 10 for text in completions]

    texts = ["a", "bb", None, "ccc", "dddd", "e"]
    scores = D.measured_uniqueness(by_length, texts, ["p", "p", "q", "q", "r", "r"], group_size=2)
    # The group with a row not to score (None) is not measured.
    assert scores.tolist() == pytest.approx([0.1, 0.2, 0.0, 0.0, 0.4, 0.1]) and calls == ["p", "r"]
    for bad in ([1.5, 0.0], [0.5], [float("nan"), 0.0]):
        with pytest.raises(ValueError, match="must return 2 scores in \\[0, 1\\]"):
            D.measured_uniqueness(lambda completions, prompt, bad=bad: bad, ["x", "y"], ["p", "p"], group_size=2)


def test_diversity_score_weights_its_halves():
    semantic, uniqueness = torch.tensor([0.2, 0.6]), torch.tensor([1.0, 0.0])
    assert D.diversity_score(semantic, uniqueness).tolist() == pytest.approx([0.6, 0.3])  # Eq. 9
    assert D.diversity_score(semantic, uniqueness, formula_weight=0.0).tolist() == pytest.approx([0.2, 0.6])
    assert D.diversity_score(semantic, uniqueness, formula_weight=0.25).tolist() == pytest.approx([0.4, 0.45])


def test_group_advantages_none_and_batch_scaling():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0])
    none, _ = D.group_advantages(rewards, 2, "none", 1e-6)
    torch.testing.assert_close(none, torch.tensor([0.5, -0.5, 0.0, 0.0]))
    batch, std = D.group_advantages(rewards, 2, "batch", 1e-6)
    torch.testing.assert_close(std, torch.full((4,), 0.5))
    torch.testing.assert_close(batch, torch.tensor([1.0, -1.0, 0.0, 0.0]), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: D.semantic_diversity(torch.zeros(5, 3), 2),
        lambda: D.formula_uniqueness([set()] * 3, 2),
        lambda: D.coupling_weights(torch.zeros(3), torch.ones(3, dtype=torch.bool), 2, 1.0),
        lambda: D.semantic_diversity(torch.zeros(4, 3), 1),
    ],
)
def test_incomplete_groups_are_refused(call):
    with pytest.raises(ValueError, match="group"):
        call()


# ---------------------------------------------------------------------------------------------------------------
# Monte-Carlo check of the paper's sampled entropy estimator (Eq. 14)
# ---------------------------------------------------------------------------------------------------------------


def test_sampled_entropy_estimator_is_unbiased_in_value_and_gradient():
    torch.manual_seed(0)
    logits = torch.tensor([1.5, 0.2, -0.7, 0.9, -2.0], requires_grad=True)
    log_probs = torch.log_softmax(logits, dim=-1)
    exact = -(log_probs.exp() * log_probs).sum()
    (exact_grad,) = torch.autograd.grad(exact, logits)

    num_samples = 400_000
    samples = torch.multinomial(log_probs.exp().detach(), num_samples, replacement=True)
    logps = torch.log_softmax(logits, dim=-1)[samples].view(1, -1)
    estimate = D.sampled_token_entropy(logps, logps.detach()).mean()
    (estimate_grad,) = torch.autograd.grad(estimate, logits)

    torch.testing.assert_close(estimate, exact, atol=0.01, rtol=0)
    torch.testing.assert_close(estimate_grad, exact_grad, atol=0.01, rtol=0)
    assert exact_grad.abs().max() > 0.1  # the comparison has something to compare


# ---------------------------------------------------------------------------------------------------------------
# Properties (hypothesis)
# ---------------------------------------------------------------------------------------------------------------


@st.composite
def group_batches(draw):
    group_size = draw(st.integers(2, 6))
    num_groups = draw(st.integers(1, 4))
    n = group_size * num_groups
    unit = st.floats(0.0, 1.0, allow_nan=False)
    scores = torch.tensor(draw(st.lists(unit, min_size=n, max_size=n)), dtype=torch.float32)
    correct = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return group_size, scores, correct


@settings(max_examples=200, deadline=None)
@given(batch=group_batches(), coef=st.floats(0.0, 1.0), clip=st.floats(0.01, 1.0), tau=st.floats(0.0, 50.0))
def test_bonus_and_weights_invariants(batch, coef, clip, tau):
    group_size, scores, correct = batch
    bonus = D.diversity_bonus(scores, correct, coef, clip)
    weights = D.coupling_weights(D.clip_score(scores, clip), correct, group_size, tau)

    assert torch.all(bonus[~correct] == 0)
    assert torch.all(weights[~correct] == 0)
    assert torch.all(bonus >= 0) and torch.all(bonus <= coef * clip * (1 + 1e-6))
    assert torch.all(weights >= 0)
    for group_correct, group_weights in zip(correct.view(-1, group_size), weights.view(-1, group_size), strict=True):
        if group_correct.any():
            assert abs(group_weights.sum().item() - 1.0) < 1e-5
        else:
            assert group_weights.sum().item() == 0.0


@settings(max_examples=100, deadline=None)
@given(batch=group_batches())
def test_zero_temperature_gives_uniform_weights(batch):
    group_size, scores, correct = batch
    weights = D.coupling_weights(scores, correct, group_size, temperature=0.0)
    for group_correct, group_weights in zip(correct.view(-1, group_size), weights.view(-1, group_size), strict=True):
        count = int(group_correct.sum())
        if count:
            expected = group_correct.float() / count
            torch.testing.assert_close(group_weights, expected)


@settings(max_examples=100, deadline=None)
@given(
    group_size=st.integers(2, 5),
    num_groups=st.integers(1, 3),
    dim=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_semantic_diversity_in_unit_interval(group_size, num_groups, dim, seed):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(group_size * num_groups, dim, generator=generator)
    scores = D.semantic_diversity(embeddings, group_size)
    assert torch.all(scores >= 0) and torch.all(scores <= 1)


@settings(max_examples=100, deadline=None)
@given(
    sets=st.lists(st.sets(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=4), min_size=2, max_size=12),
)
def test_formula_uniqueness_in_unit_interval_and_zero_for_empty(sets):
    group_size = 2
    sets = sets[: len(sets) - len(sets) % group_size]
    scores = D.formula_uniqueness(sets, group_size)
    assert torch.all(scores >= 0) and torch.all(scores <= 1)
    for member, score in zip(sets, scores.tolist(), strict=True):
        if not member:
            assert score == 0.0


def test_correct_only_reference_ignores_wrong_members():
    """`among` (DSDRConfig.diversity_reference="correct") compares a completion only with the marked members."""
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]])  # one group of 4
    marked = torch.tensor([True, True, False, True])
    # Row 0: distances to rows 1 and 3 (marked) are 0.5 and 0: mean 0.25; row 2 (at distance 1) is ignored.
    semantic = D.semantic_diversity(e, 4, marked)
    assert semantic.tolist() == pytest.approx([0.25, 0.5, (1.0 + 0.5 + 1.0) / 3, 0.25])
    assert torch.allclose(D.semantic_diversity(e, 4, torch.ones(4, dtype=torch.bool)), D.semantic_diversity(e, 4))
    assert D.semantic_diversity(e, 4, torch.tensor([True, False, False, False]))[0] == 0  # no marked mate
    sets = [{"a", "x"}, {"b", "x"}, {"a"}, {"c"}]
    # Row 0's "a" is shared only with the unmarked row 2, so it counts as unique; row 2's "a" is not (row 0 has it).
    assert D.formula_uniqueness(sets, 4, marked).tolist() == [0.5, 0.5, 0.0, 1.0]
    assert D.formula_uniqueness(sets, 4).tolist() == [0.0, 0.5, 0.0, 1.0]
    assert D.formula_uniqueness(sets, 4, torch.ones(4, dtype=torch.bool)).tolist() == [0.0, 0.5, 0.0, 1.0]
