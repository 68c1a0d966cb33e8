"""Memory-saving paths: LoRA with activation checkpointing, DeepSpeed ZeRO-2/3 with 2 processes on CPU, the encoder
kept out of ZeRO-3 partitioning, vLLM settings passed through.

Run as a script under torchrun, this file is also the DeepSpeed worker that `test_deepspeed_two_processes` launches:

    torchrun --standalone --nproc_per_node 2 tests/test_memory_paths.py STAGE OUT.json

DeepSpeed on CPU needs two settings, both only for CPU runs: accelerate picks no process-group backend without an
accelerator, so it reports one process while DeepSpeed's process group has two; the worker therefore creates the
`PartialState` with `backend="gloo"` itself and lets the trainer reuse it (`accelerator_config.use_configured_state`).
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import (
    TEST_ENCODER,
    build_tiny_model,
    build_tiny_tokenizer,
    even_length_reward,
    prompt_dataset,
    tiny_settings,
)

from dsdr_trl import DSDRConfig, DSDRGRPOTrainer

# --- LoRA + activation checkpointing ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_lora_with_activation_checkpointing(tmp_path, tiny_tokenizer, tiny_model):
    from peft import LoraConfig

    config = DSDRConfig(
        output_dir=str(tmp_path),
        **tiny_settings(activation_checkpointing=True, per_device_train_batch_size=4, gradient_accumulation_steps=2),
        max_steps=2,
        local_entropy_coef=0.01,
        entropy_estimator="full",
    )
    base = {name: p.detach().clone() for name, p in tiny_model.named_parameters()}
    trainer = DSDRGRPOTrainer(
        model=tiny_model,
        reward_funcs=even_length_reward,
        args=config,
        train_dataset=prompt_dataset(4),
        processing_class=tiny_tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
    )
    trainer.train()
    model = trainer.model
    assert model.is_gradient_checkpointing
    logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(logs) == 2 and all("dsdr/local_entropy" in log for log in logs)

    # Only adapter weights changed; every base weight is bit-identical.
    adapters = {name: p for name, p in model.named_parameters() if "lora_" in name}
    assert adapters and all(p.requires_grad for p in adapters.values())
    for name, p in model.named_parameters():
        if "lora_" in name:
            continue
        base_name = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert not p.requires_grad, name
        assert torch.equal(p, base[base_name]), name
    assert any(not torch.equal(p, torch.zeros_like(p)) for name, p in adapters.items() if "lora_B" in name)

    # The local entropy term alone (zero advantages) has a gradient on the adapters through the checkpointed forward.
    model.train()
    completion_ids = torch.randint(5, len(tiny_tokenizer), (4, 5), generator=torch.Generator().manual_seed(0))
    prompt_ids = torch.randint(5, len(tiny_tokenizer), (4, 3), generator=torch.Generator().manual_seed(1))
    inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids,
        "completion_mask": torch.ones_like(completion_ids),
        "advantages": torch.zeros(4),
        "num_items_in_batch": torch.tensor(20),
        "dsdr_weight": torch.tensor([0.7, 0.3, 0.0, 0.0]),
        "dsdr_correct": torch.tensor([1.0, 1.0, 0.0, 0.0]),
    }
    loss = trainer._compute_loss(model, inputs)
    grads = torch.autograd.grad(loss, list(adapters.values()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


# --- ZeRO-3 never partitions the encoder -----------------------------------------------------------------------------


def test_encoder_is_loaded_whole_under_a_zero3_config():
    """With a ZeRO-3 config active, `from_pretrained` would build the encoder inside `zero.Init` (partitioned, and
    on a single process without a process group it fails outright); the trainer's loader sidesteps it."""
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    from dsdr_trl.config import DEFAULT_DIVERSITY_ENCODER
    from dsdr_trl.encoder import load_diversity_encoder, zero3_init_disabled

    ds_config = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    try:
        assert is_deepspeed_zero3_enabled()
        with zero3_init_disabled():
            assert not is_deepspeed_zero3_enabled()
            encoder = load_diversity_encoder(DEFAULT_DIVERSITY_ENCODER, "cpu", 256)
        assert is_deepspeed_zero3_enabled()  # restored for the policy
    finally:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
        del ds_config
    weights = [p for p in encoder.parameters() if p.dim() == 2]
    assert weights and all(p.numel() > 0 and not hasattr(p, "ds_id") for p in encoder.parameters())
    assert encoder.encode(["x = 1"], convert_to_tensor=True).shape == (1, 384)


# --- vLLM settings -----------------------------------------------------------------------------------------------------


def test_vllm_settings_pass_through():
    vllm = dict(
        use_vllm=True,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.35,
        vllm_tensor_parallel_size=1,
        vllm_enable_sleep_mode=True,
        vllm_importance_sampling_correction=True,
    )
    config = DSDRConfig(output_dir="unused", **tiny_settings(), **vllm)
    for key, value in vllm.items():
        assert getattr(config, key) == value, key
    assert config.diversity_coef == 0.001  # DSDR's own fields are untouched by the generation backend


# --- DeepSpeed ZeRO-2 / ZeRO-3, 2 processes --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.distributed
def test_deepspeed_two_processes(tmp_path):
    pytest.importorskip("deepspeed")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    results = {}
    for stage in (2, 3):
        out = tmp_path / f"zero{stage}.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        command += [__file__, str(stage), str(out)]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        results[stage] = json.loads(out.read_text())

    for stage, result in results.items():
        assert result["world_size"] == 2 and result["distributed_type"] == "DEEPSPEED", stage
        assert result["zero_stage"] == stage
        assert result["encoder_whole"], "the encoder must not be partitioned"
        assert len(result["losses"]) == 2 and all(abs(x) < 10 for x in result["losses"])
        assert result["has_dsdr_metrics"] and result["has_verifier_timeouts"]
        # The verifier's hard limit holds in every rank, from a non-main thread, with a pathological answer.
        assert result["verifier"] == [1.0, 0.0, 0.0]
        assert result["verifier_seconds"] < 2 * 1.5 + 1.0
    # Same model, data and seed: ZeRO-2 and ZeRO-3 take the same first step up to float rounding.
    assert results[2]["losses"][0] == pytest.approx(results[3]["losses"][0], rel=1e-4, abs=1e-6)


def _deepspeed_worker(stage: int, out_path: str) -> None:
    """Trains 2 DSDR steps under DeepSpeed ZeRO-`stage` (2 processes on CPU; `tests/test_gpu.py` runs 1 on a GPU)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    from accelerate import PartialState

    from dsdr_trl.rewards import accuracy_reward

    cuda = torch.cuda.is_available()
    if not cuda:
        PartialState(backend="gloo")  # see the module docstring
    ds_config = {
        "zero_optimization": {"stage": stage},
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }
    tokenizer = build_tiny_tokenizer()
    config = DSDRConfig(
        output_dir=os.path.join(os.path.dirname(out_path), f"zero{stage}"),
        deepspeed=ds_config,
        accelerator_config={"use_configured_state": not cuda},
        # fp32 (bf16=False): the DeepSpeed config above has no precision section, so the two agree; on a GPU too.
        **tiny_settings(use_cpu=False, per_device_train_batch_size=4, max_steps=2, seed=3),
        correctness_reward="even_length_reward",
        diversity_encoder=TEST_ENCODER,
    )
    trainer = DSDRGRPOTrainer(
        model=build_tiny_model(tokenizer),
        reward_funcs=[even_length_reward, accuracy_reward],  # the verifier runs in every rank's training step
        args=config,
        train_dataset=prompt_dataset(4),
        processing_class=tokenizer,
    )
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log]

    verified, elapsed = [], []

    def verify():
        start = time.monotonic()
        completions = ["\\boxed{34}", "\\boxed{9^{9^{9^{9}}}}", "Answer: 35"]
        verified.extend(accuracy_reward(completions, solution=["34"] * 3))
        elapsed.append(time.monotonic() - start)

    thread = threading.Thread(target=verify)
    thread.start()
    thread.join(timeout=60)

    state = trainer.accelerator.state
    result = {
        "world_size": trainer.accelerator.num_processes,
        "distributed_type": state.distributed_type.name,
        "zero_stage": state.deepspeed_plugin.zero_stage,
        "encoder_whole": all(
            p.numel() > 0 and not hasattr(p, "ds_id") for p in trainer.diversity_encoder.parameters()
        ),
        "losses": [log["loss"] for log in logs],
        "has_dsdr_metrics": all("dsdr/bonus_mean" in log and "dsdr/local_entropy" in log for log in logs),
        "has_verifier_timeouts": all("dsdr/verifier_timeouts" in log for log in logs),
        "verifier": verified,
        "verifier_seconds": elapsed[0] if elapsed else float("inf"),
    }
    # Every rank checks its own verifier; rank 0 writes the file only if rank 1 agrees.
    gathered = [None] * result["world_size"]
    torch.distributed.all_gather_object(gathered, result)
    if trainer.accelerator.is_main_process:
        result["verifier"] = verified if all(g["verifier"] == verified for g in gathered) else "ranks disagree"
        result["verifier_seconds"] = max(g["verifier_seconds"] for g in gathered)
        Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    _deepspeed_worker(int(sys.argv[1]), sys.argv[2])
