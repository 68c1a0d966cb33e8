"""Checkpoint and resume mid-run: steps 3-4 after resuming from checkpoint-2 equal those of an uninterrupted run."""

import pytest
import torch
from helpers import TINY_CPU, build_tiny_model, even_length_reward, prompt_dataset

from dsdr_trl import DSDRConfig, DSDRGRPOTrainer

pytestmark = pytest.mark.slow


def run(output_dir, tokenizer, num_prompts, resume_from=None):
    config = DSDRConfig(
        output_dir=str(output_dir),
        **TINY_CPU | dict(save_strategy="steps", save_steps=2),
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
