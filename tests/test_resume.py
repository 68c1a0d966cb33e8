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
        # save_steps=2 lines up: no checkpoint warning (the tiny model's completions hold no formula, which warns too)
        warnings.filterwarnings("error", ".*save_steps", DSDRSettingWarning)
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


# `dsdr-trl train --resume_from_checkpoint auto`, as a preempted job restarts: from the last checkpoint of its
# output_dir, or from scratch when it has none; a damaged checkpoint is named in one line before anything is written.
CLI_RUN = ["train", "--config", "configs/tiny/dsdr.yaml", "--passk_eval_dataset", "", "--max_completion_length", "16"]


def cli_train(capsys, monkeypatch, *argv):
    from pathlib import Path

    from dsdr_trl import cli

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status = cli.main([*CLI_RUN, *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_resume_auto_starts_fresh_then_resumes_from_the_last_checkpoint(capsys, monkeypatch, tmp_path):
    import json

    output_dir = str(tmp_path / "run")
    # 2 steps with a checkpoint after each: the first run starts fresh, the second goes on from checkpoint-2 to step 3.
    argv = ["--output_dir", output_dir, "--save_strategy", "steps", "--save_steps", "1"]
    for flag_value in ("auto", "true"):
        status, out, err = cli_train(
            capsys, monkeypatch, *argv, "--max_steps", "2", "--resume_from_checkpoint", flag_value
        )
        assert status == 0, err
        assert f"no checkpoint in {output_dir}: starting fresh" in out
        assert (tmp_path / "run" / "checkpoint-2" / "trainer_state.json").is_file()
        status, out, err = cli_train(
            capsys, monkeypatch, *argv, "--max_steps", "3", "--resume_from_checkpoint", flag_value
        )
        assert status == 0, err
        assert f"resuming from {output_dir}/checkpoint-2" in out
        state = json.loads((tmp_path / "run" / "checkpoint-3" / "trainer_state.json").read_text())
        steps = [log["step"] for log in state["log_history"] if "loss" in log]
        assert state["global_step"] == 3 and steps == [1, 2, 3]  # steps 1-2 restored, step 3 trained after resuming
        import shutil

        shutil.rmtree(tmp_path / "run")


def test_a_damaged_checkpoint_is_named_in_one_line(capsys, monkeypatch, tmp_path):
    import shutil

    output_dir = tmp_path / "run"
    status, _, err = cli_train(
        capsys,
        monkeypatch,
        "--output_dir",
        str(output_dir),
        "--max_steps",
        "1",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
    )
    assert status == 0, err
    for name in ("trainer_state.json", "model.safetensors", "optimizer.pt"):
        damaged = tmp_path / f"damaged-{name}" / "checkpoint-1"
        shutil.copytree(output_dir / "checkpoint-1", damaged)
        data = (damaged / name).read_bytes()
        (damaged / name).write_bytes(data[: len(data) // 2])  # a copy cut short, as a full disk leaves it
        target = tmp_path / f"out-{name}"
        status, out, err = cli_train(
            capsys, monkeypatch, "--output_dir", str(target), "--resume_from_checkpoint", str(damaged)
        )
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1, err
        assert lines[0].startswith("dsdr-trl train: error: checkpoint file") and f"{damaged / name}' is damaged" in err
        assert not target.exists()  # no dsdr_config.json, no lock: nothing written before validation passed
