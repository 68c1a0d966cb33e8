"""Checkpoint and resume mid-run: steps after resuming from a checkpoint equal those of an uninterrupted run when the
checkpoint ends a generation batch; a checkpoint inside one warns, and its resume does differ."""

import warnings

import pytest
import torch
from helpers import TINY_CPU, build_tiny_model, even_length_reward, prompt_dataset

from dsdr_trl import DSDRConfig, DSDRGRPOTrainer
from dsdr_trl.config import DSDRSettingWarning

pytestmark = pytest.mark.slow


def run(output_dir, tokenizer, num_prompts, resume_from=None, **overrides):
    settings = dict(
        save_strategy="steps",
        save_steps=2,
        # 2 prompts x G=4 per optimizer step, split into 2 micro-batches: TRL generates once per optimizer step
        # (steps_per_generation = gradient_accumulation_steps), so a checkpoint never holds half-used completions.
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        num_generations=4,
        max_completion_length=8,
        max_steps=4,
        learning_rate=0.1,  # large, so that a wrong restored state shows up in the later steps' numbers
        seed=11,
        local_entropy_coef=0.01,
        diversity_coef=0.01,
    )
    config = DSDRConfig(output_dir=str(output_dir), **TINY_CPU | settings | overrides)
    trainer = DSDRGRPOTrainer(
        model=build_tiny_model(tokenizer, seed=5),
        reward_funcs=even_length_reward,
        args=config,
        train_dataset=prompt_dataset(num_prompts),
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=resume_from)
    logs = {log["step"]: log for log in trainer.state.log_history if "loss" in log}
    return trainer, logs


# 2 prompts per optimizer step. With 4 prompts an epoch is 2 steps: the run resumes at an epoch boundary and steps 3-4
# use epoch 1's prompt order (TRL's own sampler would replay epoch 0's). With 6 prompts an epoch is 3 steps: the run
# resumes mid-epoch (the trainer skips the used batches) and step 4 starts a new epoch.
@pytest.mark.parametrize("num_prompts", [4, 6], ids=["epoch_boundary", "mid_epoch"])
def test_resume_from_checkpoint_reproduces_later_steps(tmp_path, tiny_tokenizer, num_prompts):
    full, full_logs = run(tmp_path / "full", tiny_tokenizer, num_prompts)
    checkpoint = tmp_path / "full" / "checkpoint-2"
    assert checkpoint.is_dir()
    resumed, resumed_logs = run(tmp_path / "resumed", tiny_tokenizer, num_prompts, resume_from=str(checkpoint))

    # The resumed history starts with steps 1-2 as restored from the checkpoint; 3-4 were computed after resuming.
    assert sorted(full_logs) == sorted(resumed_logs) == [1, 2, 3, 4]
    assert resumed.state.global_step == 4
    keys = ["loss", "grad_norm", "reward", "reward_std", "entropy", "dsdr/bonus_mean", "dsdr/local_entropy"]
    keys += ["dsdr/frac_correct", "completions/mean_length"]
    for step in (3, 4):
        for key in keys:
            assert resumed_logs[step][key] == pytest.approx(full_logs[step][key], rel=1e-5, abs=1e-7), (step, key)
    assert any(full_logs[step]["grad_norm"] > 0 for step in (3, 4))  # the compared steps did update the model
    for (name, p_full), p_resumed in zip(full.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(p_resumed, p_full, rtol=1e-5, atol=1e-6, msg=name)


def assert_same_steps(full_logs, resumed_logs, steps):
    for step in steps:
        # A step without a generation logs no reward or completion metrics.
        assert resumed_logs[step].keys() == full_logs[step].keys()
        for key, value in full_logs[step].items():
            if "time" in key:  # wall-clock figures
                continue
            assert resumed_logs[step][key] == pytest.approx(value, rel=1e-5, abs=1e-7), (step, key)


# One generation batch for two optimizer steps: steps_per_generation = 4 micro-batches, at 2 per step.
TWO_STEP_GENERATIONS = dict(steps_per_generation=4)


def test_resume_at_a_generation_batch_boundary_is_exact_when_a_batch_spans_steps(tmp_path, tiny_tokenizer):
    # 4 prompts x G=4 per generation, 2 optimizer steps each; checkpoint-2 ends the first generation batch.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DSDRSettingWarning)  # save_steps=2 lines up: no warning
        _, full_logs = run(tmp_path / "full", tiny_tokenizer, 8, **TWO_STEP_GENERATIONS)
        _, resumed_logs = run(
            tmp_path / "resumed", tiny_tokenizer, 8, str(tmp_path / "full" / "checkpoint-2"), **TWO_STEP_GENERATIONS
        )
    assert_same_steps(full_logs, resumed_logs, steps=(3, 4))


def test_checkpoints_inside_a_generation_batch_warn_and_their_resume_differs(tmp_path, tiny_tokenizer):
    with pytest.warns(DSDRSettingWarning, match="Set save_steps to a multiple of 2"):
        _, full_logs = run(tmp_path / "full", tiny_tokenizer, 8, save_steps=1, **TWO_STEP_GENERATIONS)
    with pytest.warns(DSDRSettingWarning):
        _, resumed_logs = run(
            tmp_path / "resumed",
            tiny_tokenizer,
            8,
            str(tmp_path / "full" / "checkpoint-1"),
            save_steps=1,
            **TWO_STEP_GENERATIONS,
        )
    # What the warning says: step 2 used the second half of the completions sampled at step 1 in the uninterrupted
    # run, and freshly sampled ones after resuming.
    assert resumed_logs[2]["loss"] != pytest.approx(full_logs[2]["loss"], rel=1e-5, abs=1e-7)
