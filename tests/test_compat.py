"""DSDR with its terms on, combined with each `GRPOTrainer` feature a user may turn on.

Every case trains a fresh tiny model for a step or two and checks three things: the trainable parameters moved, every
`dsdr/*` metric was logged and is finite, and the `dsdr_diversity` reward column of every scored batch holds exactly
what `diversity.diversity_bonus` gives for that batch's correctness column and diversity scores.
"""

import importlib.util
import math

import pytest
import torch
import transformers
from datasets import Dataset
from helpers import PROMPTS, SOLUTIONS, build_tiny_model, build_tiny_tokenizer, tiny_settings
from packaging.version import Version

from dsdr_trl import DSDRConfig, DSDRGRPOTrainer
from dsdr_trl.diversity import diversity_bonus, diversity_score

pytestmark = pytest.mark.slow

# One generation batch of 2 prompts x G=4, 2 optimizer steps: about a second of training per case. λ_d and λ_ℓ keep
# the paper's defaults (both on).
BASE = tiny_settings(per_device_train_batch_size=8, max_steps=2, seed=3)

# Logged by the step that scores a generation batch (with several steps per generation, only by the first of them).
SCORING_METRICS = (
    "dsdr/frac_correct",
    "dsdr/bonus_mean",
    "dsdr/bonus_max",
    "dsdr/semantic_mean",
    "dsdr/formula_mean",
    "dsdr/diversity_correct_mean",
    "dsdr/frac_zero_std_before",
    "dsdr/frac_zero_std_after",
)
# Logged by every step, from the loss.
LOSS_METRICS = ("dsdr/local_entropy", "dsdr/entropy_correct")


def alternate_correct(completions, **kwargs):
    """Stand-in verifier: rows 0 and 2 of every group of 4 are correct, so every group is mixed and has a bonus."""
    return [float(i % 2 == 0) for i in range(len(completions))]


async def alternate_correct_async(completions, **kwargs):
    return alternate_correct(completions)


def alternate_correct_or_none(completions, **kwargs):
    """Row 3 of every group of 4 is left unscored (None)."""
    return [None if i % 4 == 3 else float(i % 2 == 0) for i in range(len(completions))]


def length_reward_or_none(completions, **kwargs):
    """A second reward that skips rows 2 and 3 of every group: row 3 is then skipped by every function."""
    return [None if i % 4 >= 2 else len(str(c)) / 100 for i, c in enumerate(completions)]


def length_reward(completions, **kwargs):
    return [len(str(c)) / 100 for c in completions]


class RecordingTrainer(DSDRGRPOTrainer):
    """Keeps, for each scored generation batch, the reward columns, the diversity scores and the correctness mask."""

    def __init__(self, *args, **kwargs):
        self.scored = []
        super().__init__(*args, **kwargs)

    def _diversity_scores(self, *args, **kwargs):
        semantic, formula = super()._diversity_scores(*args, **kwargs)
        self._recorded_scores = diversity_score(semantic, formula, self.args.formula_weight)
        return semantic, formula

    def _calculate_rewards(self, *args, **kwargs):
        rewards_per_func = super()._calculate_rewards(*args, **kwargs)
        self.scored.append(
            {
                "mode": "train" if self.model.training else "eval",
                "rewards": rewards_per_func.detach().cpu().clone(),
                "diversity": self._recorded_scores.detach().cpu().clone(),
                "correct": self._dsdr_pending["correct"].detach().cpu().clone(),
            }
        )
        return rewards_per_func


def trainable_parameters(trainer):
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}


def assert_finite_metrics(logs, prefix=""):
    """Every log has the loss metrics, the first has the scoring metrics, and every value logged is finite."""
    assert logs, "nothing was logged"
    assert {prefix + name for name in SCORING_METRICS} <= set(logs[0])
    for log in logs:
        assert {prefix + name for name in LOSS_METRICS} <= set(log)
        for name in (*SCORING_METRICS, *LOSS_METRICS):
            if prefix + name in log:
                value = log[prefix + name]
                assert value is not None and math.isfinite(value), (prefix + name, value)


def assert_bonus_column(trainer, modes=("train",)):
    """The bonus column is λ_d · c · clip(g, 0, σ_d), with c read from the correctness column TRL logged."""
    args = trainer.args
    index = trainer._correctness_index
    assert {batch["mode"] for batch in trainer.scored} >= set(modes)
    for batch in trainer.scored:
        rewards = batch["rewards"]
        user_rewards = rewards[:, :-1]
        correct = user_rewards[:, index] > args.correctness_threshold  # a None (NaN) row is incorrect
        assert torch.equal(batch["correct"], correct.float())
        expected = diversity_bonus(batch["diversity"], correct, args.diversity_coef, args.diversity_clip)
        # A row no user function scored is excluded from the baseline, as TRL does for such rows.
        expected = expected.masked_fill(torch.isnan(user_rewards).all(dim=1), float("nan"))
        # The bonus is of the order λ_d = 1e-3: compare it relatively, not to the default absolute tolerance.
        torch.testing.assert_close(rewards[:, -1], expected, rtol=1e-5, atol=1e-9, equal_nan=True)
        assert (rewards[:, -1].nan_to_num() > 0).any(), "no correct row got a bonus: the check would be vacuous"
    # What the completions table shows for the last generation batch is the recorded column.
    last = trainer.scored[-1]["rewards"]
    logged = torch.tensor(list(trainer._logs["rewards"]["dsdr_diversity"])[-last.shape[0] :])
    torch.testing.assert_close(logged, last[:, -1], equal_nan=True)


def run_case(tmp_path, tokenizer, encoder, *, reward_funcs=(alternate_correct,), model=None, dataset=None, **options):
    """Trains a fresh tiny model with DSDR on; returns the trainer and the logs of its training steps."""
    trainer_kwargs = {
        key: options.pop(key)
        for key in ("eval_dataset", "peft_config", "reward_processing_classes", "tools")
        if key in options
    }
    config = DSDRConfig(output_dir=str(tmp_path), **{**BASE, **options})
    assert config.diversity_coef > 0 and config.local_entropy_coef > 0
    trainer = RecordingTrainer(
        model=model if model is not None else build_tiny_model(tokenizer),
        reward_funcs=list(reward_funcs),
        args=config,
        train_dataset=dataset if dataset is not None else Dataset.from_dict({"prompt": PROMPTS[:4]}),
        processing_class=tokenizer,
        diversity_encoder=encoder,
        **trainer_kwargs,
    )
    before = trainable_parameters(trainer)
    trainer.train()
    after = trainable_parameters(trainer)
    assert before.keys() == after.keys() and before
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert not unchanged, f"parameters that did not change: {unchanged}"

    steps = [log for log in trainer.state.log_history if "loss" in log]
    assert len(steps) == config.max_steps
    assert_finite_metrics(steps)
    assert_bonus_column(trainer)
    return trainer, steps


@pytest.fixture
def run(tmp_path, tiny_tokenizer, diversity_encoder):
    def run(processing_class=tiny_tokenizer, **options):
        return run_case(tmp_path, processing_class, diversity_encoder, **options)

    return run


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo", "vespo"])
def test_loss_types(run, loss_type):
    # LUSPO is a sequence-level loss: TRL requires sequence-level importance sampling with it.
    level = "sequence" if loss_type == "luspo" else "token"
    _, steps = run(loss_type=loss_type, importance_sampling_level=level)
    assert steps[-1]["loss"] is not None


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_scale_rewards(run, scale_rewards):
    run(scale_rewards=scale_rewards)


def test_evaluation_with_num_generations_eval_and_eval_on_start(run):
    # Eval groups of 2 (G=4 in training); 4 eval rows per batch must be a multiple of that.
    trainer, _ = run(
        eval_dataset=Dataset.from_dict({"prompt": PROMPTS[4:6]}),
        eval_strategy="steps",
        eval_steps=100,
        eval_on_start=True,
        num_generations_eval=2,
        per_device_eval_batch_size=4,
    )
    evaluations = [log for log in trainer.state.log_history if "eval_loss" in log]
    assert evaluations and evaluations[0]["step"] == 0  # eval_on_start: before the first optimizer step
    assert_finite_metrics(evaluations, prefix="eval_")
    assert_bonus_column(trainer, modes=("train", "eval"))
    assert any(batch["mode"] == "eval" and batch["rewards"].shape[0] == 4 for batch in trainer.scored)


def test_num_iterations(run):
    # Two optimizer steps on one generation batch: the second step is off-policy and uses old log-probs.
    trainer, _ = run(num_iterations=2)
    assert len(trainer.scored) == 1


def test_steps_per_generation(run):
    trainer, _ = run(per_device_train_batch_size=4, steps_per_generation=2)
    assert len(trainer.scored) == 1 and trainer.scored[0]["rewards"].shape[0] == 8


def test_gradient_accumulation(run):
    trainer, _ = run(per_device_train_batch_size=4, gradient_accumulation_steps=2)
    assert len(trainer.scored) == 2


def test_peft_lora(run, tiny_tokenizer):
    from peft import LoraConfig

    model = build_tiny_model(tiny_tokenizer)
    base = {name: p.detach().clone() for name, p in model.named_parameters()}
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer, _ = run(model=model, peft_config=lora)
    trained = trainable_parameters(trainer)
    assert trained and all("lora_" in name for name in trained)
    for name, p in trainer.model.get_base_model().named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, base[name.replace(".base_layer", "")]), name


def test_sequence_classification_reward_model(run, tiny_tokenizer):
    from transformers import Qwen3Config, Qwen3ForSequenceClassification

    torch.manual_seed(0)
    policy_config = build_tiny_model(tiny_tokenizer).config.to_dict()
    reward_config = Qwen3Config(**{**policy_config, "num_labels": 1, "architectures": None})
    reward_model = Qwen3ForSequenceClassification(reward_config)
    reward_model.config._name_or_path = "tiny-reward-model"  # TRL names the reward column after it
    frozen = {name: p.detach().clone() for name, p in reward_model.named_parameters()}
    trainer, steps = run(
        reward_funcs=(alternate_correct, reward_model),
        reward_processing_classes=[None, tiny_tokenizer],
    )
    assert trainer.reward_func_names == ["alternate_correct", "tiny-reward-model", "dsdr_diversity"]
    assert all(torch.isfinite(batch["rewards"][:, 1]).all() for batch in trainer.scored)
    assert "rewards/tiny-reward-model/mean" in steps[0]
    for name, p in reward_model.named_parameters():
        assert torch.equal(p.detach().cpu(), frozen[name]), name


def test_async_reward_function(run):
    trainer, _ = run(reward_funcs=(alternate_correct_async, length_reward))
    assert trainer._has_async_funcs


def test_reward_functions_returning_none(run):
    trainer, _ = run(reward_funcs=(alternate_correct_or_none, length_reward_or_none))
    for batch in trainer.scored:
        bonus = batch["rewards"][:, -1].view(-1, 4)
        assert torch.isnan(bonus[:, 3]).all() and not torch.isnan(bonus[:, :3]).any()


def test_several_reward_functions_with_weights(run):
    trainer, steps = run(
        reward_funcs=(length_reward, alternate_correct),
        reward_weights=[0.5, 2.0],
        correctness_reward="alternate_correct",
    )
    assert trainer._correctness_index == 1
    assert trainer.reward_weights.tolist() == [0.5, 2.0, 1.0]
    for log in steps:
        expected = (
            0.5 * log["rewards/length_reward/mean"]
            + 2.0 * log["rewards/alternate_correct/mean"]
            + log["rewards/dsdr_diversity/mean"]
        )
        assert log["reward"] == pytest.approx(expected, abs=1e-6)


def test_iterable_dataset(run):
    dataset = Dataset.from_dict({"prompt": PROMPTS, "solution": SOLUTIONS}).to_iterable_dataset()
    trainer, _ = run(dataset=dataset)
    assert len(trainer.scored) == 2
    prompts = list(trainer._logs["prompt"])  # the last generation batch: groups of G copies of one prompt
    assert all(len(set(prompts[i : i + 4])) == 1 for i in range(0, len(prompts), 4))


def test_conversational_prompts(run):
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": prompt}] for prompt in PROMPTS[:4]]})
    trainer, _ = run(dataset=dataset)
    assert isinstance(trainer._logs["completion"][-1], list)  # completions are assistant messages


def test_reference_model_with_kl_and_sync(run, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    # beta > 0 loads a reference model from the policy's path; syncing it every step mixes the policy into it.
    trainer, steps = run(
        model=tiny_model_dir, beta=0.04, sync_ref_model=True, ref_model_sync_steps=1, ref_model_mixup_alpha=0.5
    )
    assert trainer.ref_model is not None
    assert all(log["kl"] is not None and math.isfinite(log["kl"]) for log in steps)
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    synced = dict(trainer.ref_model.named_parameters())
    assert all(not torch.equal(p, synced[name]) for name, p in initial.named_parameters())


def multiply(a: int, b: int) -> int:
    """
    Multiplies two integers.

    Args:
        a: The first integer.
        b: The second integer.

    Returns:
        The product.
    """
    return a * b


# TRL parses tool calls with transformers' response templates from 5.13 on, and with jmespath before that.
TOOLS_SUPPORTED = Version(transformers.__version__) >= Version("5.13.0") or importlib.util.find_spec("jmespath")


@pytest.mark.skipif(not TOOLS_SUPPORTED, reason="tool calling needs transformers>=5.13 or jmespath")
def test_tools(run):
    from trl.chat_template_utils import qwen3_chat_template

    # Tool calling needs a chat template TRL knows how to parse: Qwen3's, over the tiny tokenizer.
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = qwen3_chat_template
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": prompt}] for prompt in PROMPTS[:4]]})
    trainer, _ = run(
        processing_class=tokenizer,
        model=build_tiny_model(tokenizer),
        dataset=dataset,
        tools=[multiply],
        max_tool_calling_iterations=1,
    )
    assert trainer.tools == [multiply]
