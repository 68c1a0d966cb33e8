"""Checks that need a CUDA device (skipped without one); `scripts/gpu_check.sh` runs them with the GPU benchmark.

bf16 training of DSDR and GRPO with a small random policy, the encoder in half precision on the GPU, and DeepSpeed
ZeRO-2 in a single process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import TEST_ENCODER, build_tiny_model, even_length_reward, prompt_dataset
from trl import GRPOConfig, GRPOTrainer

from dsdr_trl import DSDRConfig, DSDRGRPOTrainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def common(tmp_path, name):
    return dict(
        output_dir=str(tmp_path / name),
        bf16=True,
        activation_checkpointing=True,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        num_generations=8,
        max_completion_length=64,
        max_steps=3,
        learning_rate=1e-4,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=0,
    )


def test_bf16_dsdr_and_grpo_train_on_gpu(tmp_path, tiny_tokenizer):

    grpo = GRPOTrainer(
        model=build_tiny_model(tiny_tokenizer),
        reward_funcs=even_length_reward,
        args=GRPOConfig(epsilon_high=0.28, beta=0.0, loss_type="grpo", **common(tmp_path, "grpo")),
        train_dataset=prompt_dataset(4),
        processing_class=tiny_tokenizer,
    )
    grpo.train()
    dsdr = DSDRGRPOTrainer(
        model=build_tiny_model(tiny_tokenizer),
        reward_funcs=even_length_reward,
        args=DSDRConfig(**common(tmp_path, "dsdr"), diversity_encoder=TEST_ENCODER),
        train_dataset=prompt_dataset(4),
        processing_class=tiny_tokenizer,
    )
    dsdr.train()
    for trainer in (grpo, dsdr):
        logs = [log for log in trainer.state.log_history if "loss" in log]
        assert len(logs) == 3 and all(torch.isfinite(torch.tensor(log["loss"])) for log in logs)
    dsdr_logs = [log for log in dsdr.state.log_history if "loss" in log]
    assert all(log["dsdr/semantic_mean"] > 0 for log in dsdr_logs if log["dsdr/frac_correct"] > 0)

    encoder = dsdr.diversity_encoder
    parameter = next(encoder.parameters())
    assert parameter.device.type == "cuda" and parameter.dtype == torch.float16
    embeddings = encoder.encode(["$x = 1$", "Answer: 2"], convert_to_tensor=True, normalize_embeddings=True)
    assert embeddings.device.type == "cuda" and torch.isfinite(embeddings).all()


@pytest.mark.slow
def test_deepspeed_zero2_single_process(tmp_path):
    pytest.importorskip("deepspeed")
    worker = Path(__file__).with_name("test_memory_paths.py")
    out = tmp_path / "zero2.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    command += [str(worker), "2", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    result = json.loads(out.read_text())
    assert result["distributed_type"] == "DEEPSPEED" and result["zero_stage"] == 2
    assert result["encoder_whole"] and result["has_dsdr_metrics"] and len(result["losses"]) == 2
