"""Bad input reaching DSDR's scoring: each case drives `DSDRGRPOTrainer._calculate_rewards` with crafted completions
(one process) and states the outcome. Also: no remote code is trusted (`make quality`'s ruff `S` rules review the
source for eval, exec, unsafe loads and shell commands)."""

import math

import pytest
import torch
from datasets import Dataset
from helpers import TINY_CPU, build_tiny_model

from dsdr_trl import DSDRConfig, DSDRGRPOTrainer
from dsdr_trl.rewards import accuracy_reward

pytestmark = pytest.mark.slow

CORRECT = "We get $2x = 68$, so $x = 34$. \\boxed{34}"
CORRECT_OTHER_ROUTE = "Since $30 + 4 = 34$, the answer is \\boxed{34}."
WRONG = "I think $x = 35$. \\boxed{35}"


class CountingEncoder:
    """Wraps the real encoder and records how many texts each `encode` call received."""

    def __init__(self, encoder):
        self.encoder, self.calls = encoder, []

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode(self, texts, **kwargs):
        self.calls.append(list(texts))
        return self.encoder.encode(texts, **kwargs)


def make_trainer(tmp_path, tokenizer, group_size, reward_funcs=accuracy_reward, encoder=None, **dsdr):
    config = DSDRConfig(
        output_dir=str(tmp_path / f"g{group_size}"),
        **TINY_CPU,
        per_device_train_batch_size=group_size,
        num_generations=group_size,
        diversity_coef=dsdr.pop("diversity_coef", 0.1),  # large enough that bonuses differ visibly between rows
        **dsdr,
    )
    trainer = DSDRGRPOTrainer(
        model=build_tiny_model(tokenizer),
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=Dataset.from_dict({"prompt": ["p"], "solution": ["34"]}),
        processing_class=tokenizer,
        diversity_encoder=encoder,
    )
    trainer.model.train()
    if not isinstance(trainer.diversity_encoder, CountingEncoder):
        trainer.diversity_encoder = CountingEncoder(trainer.diversity_encoder)
    return trainer


@pytest.fixture(scope="module")
def trainer4(tmp_path_factory, tiny_tokenizer):
    return make_trainer(tmp_path_factory.mktemp("faults"), tiny_tokenizer, group_size=4)


def score(trainer, completions, solution="34"):
    """Runs DSDR's scoring on one generation batch; returns (correct, bonus, weights, advantages) as lists."""
    trainer.diversity_encoder.calls.clear()
    inputs = [{"prompt": "p", "solution": solution} for _ in completions]
    ids = [[1, 2, 3]] * len(completions)
    rewards = trainer._calculate_rewards(inputs, ["p"] * len(completions), completions, ids)
    pending, trainer._dsdr_pending = trainer._dsdr_pending, None
    return (
        pending["correct"].tolist(),
        rewards[:, -1].tolist(),
        pending["weights"].tolist(),
        pending["advantages"].tolist(),
    )


def check_invariants(trainer, correct, bonus, weights, advantages, group_size):
    """What must hold for any input: finite values, bonus only on correct rows, ω a distribution over them."""
    coef = trainer.args.diversity_coef * trainer.args.diversity_clip
    assert all(math.isfinite(a) for a in advantages)
    for c, b, w in zip(correct, bonus, weights, strict=True):
        assert (0.0 <= b <= coef) if c else b == 0.0
        assert w >= 0.0 and (c or w == 0.0)
    for start in range(0, len(correct), group_size):
        group_weight = sum(weights[start : start + group_size])
        assert group_weight == pytest.approx(1.0 if any(correct[start : start + group_size]) else 0.0, abs=1e-5)


@pytest.mark.parametrize(
    ("name", "odd_completion"),
    [
        ("empty", ""),
        ("whitespace_only", " \n\t  \n"),
        ("enormous", "We have $x=1$. " * 70_000 + "\\boxed{34}"),  # ~1 MB: scored correct, embedded truncated
        ("non_utf8_decoded", b"\xff\xfe\xfa \\boxed{34}".decode("utf-8", errors="replace")),
        ("lone_surrogates", "\udcff\udcfe $x$ \\boxed{34}"),
        ("formula_free", "The answer is thirty-four. Answer: 34"),
        ("control_and_bidi", "\x00\u202e$x^2$\ufeff \\boxed{34}"),
    ],
)
def test_odd_completion_is_scored_like_any_other(trainer4, name, odd_completion):
    # The odd completion sits in a group with two correct and one wrong ordinary completion.
    completions = [odd_completion, CORRECT, CORRECT_OTHER_ROUTE, WRONG]
    correct, bonus, weights, advantages = score(trainer4, completions)
    check_invariants(trainer4, correct, bonus, weights, advantages, 4)
    expected_correct = name in ("enormous", "non_utf8_decoded", "lone_surrogates", "formula_free", "control_and_bidi")
    assert correct == [float(expected_correct), 1.0, 1.0, 0.0]
    assert len(trainer4.diversity_encoder.calls) == 1 and len(trainer4.diversity_encoder.calls[0]) == 4
    if expected_correct:
        assert bonus[0] > 0  # its semantic distance to the others is positive even without formulas


def test_groups_with_no_or_all_correct_completions(trainer4):
    none_correct = [WRONG, "no idea", "", "\\boxed{35}"]
    all_correct = [CORRECT, CORRECT_OTHER_ROUTE, "Answer: 34", "$17 \\cdot 2 = 34$ \\boxed{34}"]
    correct, bonus, weights, advantages = score(trainer4, none_correct + all_correct)
    check_invariants(trainer4, correct, bonus, weights, advantages, 4)
    # No correct completion: nothing is embedded for that group, no bonus, no weight, zero advantages.
    assert trainer4.diversity_encoder.calls == [all_correct]
    assert bonus[:4] == weights[:4] == advantages[:4] == [0.0] * 4
    # All correct: the group is revived, its advantages a full z-score ranking the bonuses.
    assert all(b > 0 for b in bonus[4:])
    group = torch.tensor(advantages[4:])
    assert group.std().item() == pytest.approx(1.0, abs=1e-3)
    assert torch.argsort(group).tolist() == torch.argsort(torch.tensor(bonus[4:])).tolist()


def test_identical_correct_completions_get_no_bonus_and_uniform_weights(trainer4):
    correct, bonus, weights, advantages = score(trainer4, [CORRECT] * 4)
    assert correct == [1.0] * 4
    assert bonus == pytest.approx([0.0] * 4, abs=1e-6)  # no distance, no unique formula
    assert weights == pytest.approx([0.25] * 4, abs=1e-6)
    assert advantages == pytest.approx([0.0] * 4, abs=1e-3)  # a dead group stays dead: nothing tells them apart


def test_none_rewards(tmp_path, tiny_tokenizer):
    def skip_some(completions, **kwargs):
        # None marks "cannot score"; TRL turns it into NaN.
        return [None if "skip" in c else float("34" in c) for c in completions]

    trainer = make_trainer(tmp_path, tiny_tokenizer, group_size=4, reward_funcs=skip_some)
    completions = ["skip", CORRECT, CORRECT_OTHER_ROUTE, WRONG, "skip", "skip", "skip", "skip"]
    correct, bonus, weights, advantages = score(trainer, completions)
    # A None row counts as incorrect, gets no weight, and its bonus column stays NaN (left out of TRL's baseline)
    # with advantage 0; a group of only None rows is all zeros.
    assert correct == [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert math.isnan(bonus[0]) and all(math.isnan(b) for b in bonus[4:])
    assert bonus[1] > 0 and bonus[2] > 0 and bonus[3] == 0.0
    assert weights[0] == 0.0 and sum(weights[1:3]) == pytest.approx(1.0, abs=1e-5)
    assert advantages[0] == 0.0 and advantages[4:] == [0.0] * 4
    assert all(math.isfinite(a) for a in advantages)


def test_group_of_two(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_tokenizer, group_size=2)
    correct, bonus, weights, advantages = score(trainer, [CORRECT, WRONG, CORRECT, CORRECT_OTHER_ROUTE])
    check_invariants(trainer, correct, bonus, weights, advantages, 2)
    # One correct of two: it takes all the weight, and the pair is split symmetrically (z-score of 2 values).
    assert weights[:2] == [1.0, 0.0] and bonus[0] > 0
    assert advantages[0] == pytest.approx(-advantages[1]) and advantages[0] > 0
    # Two correct, different: both get the same S (one pair), so ω and the advantages follow the formula term.
    assert bonus[2] > 0 and bonus[3] > 0 and sum(weights[2:]) == pytest.approx(1.0, abs=1e-6)


def test_bonus_off_skips_groups_with_a_single_correct_completion(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_tokenizer, group_size=4, diversity_coef=0.0)
    lone = [CORRECT, WRONG, "no idea", ""]
    pair = [CORRECT, CORRECT_OTHER_ROUTE, WRONG, ""]
    correct, bonus, weights, _ = score(trainer, lone + pair)
    # With the bonus off, g only shapes ω; a lone correct completion has ω = 1 whatever g is, so only the group with
    # two correct completions is embedded.
    assert trainer.diversity_encoder.calls == [pair]
    assert bonus == [0.0] * 8
    assert weights[:4] == [1.0, 0.0, 0.0, 0.0]
    assert sum(weights[4:6]) == pytest.approx(1.0, abs=1e-6) and weights[4] != pytest.approx(0.5, abs=1e-4)


# --- no remote code ---------------------------------------------------------------------------------------------------


def test_encoder_never_trusts_remote_code(monkeypatch):
    import sentence_transformers

    from dsdr_trl.encoder import load_diversity_encoder

    seen = {}

    class Recorder:
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            raise RuntimeError("stop")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", Recorder)
    with pytest.raises(RuntimeError, match="stop"):
        load_diversity_encoder("some/remote-model", "cpu", 256)
    assert seen["trust_remote_code"] is False
