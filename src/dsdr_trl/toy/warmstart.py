"""The toy task's warm start: the policy of `dsdr_trl.toy.models` after TRL's `SFTTrainer` on worked solutions.

Everything is derived from a seed (the problem split, the model's init, the SFT data order), so
`train_warmstart(DIR, seed=0)` reproduces the weights shipped in `WARMSTART_DIR` on a given machine
(`python experiments/regenerate_warmstart.py DIR` in the repository). The shipped directory holds the weights and the tokenizer, so it loads
with `from_pretrained` like any model (`configs/tiny/dsdr.yaml` trains from it).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .models import build_policy, build_task_tokenizer
from .task import STRATEGIES, WARMSTART_SEED, Problem, sft_dataset, split_problems

ASSETS_DIR = Path(__file__).parent / "assets"
# The warm start of the original task with the default SFT schedule; other shipped ones are `ASSETS_DIR / name`.
WARMSTART_DIR = ASSETS_DIR / "warmstart"
WARMSTART_NAME = "original-sft600"

# The default SFT schedule: 600 steps reach 27 % held-out pass@1 on the original task (1500 nearly memorise the SFT
# problems), the middle ground where GRPO groups carry a signal and pass@k has room above pass@1.
SFT_MAX_STEPS = 600
# What every training run of the toy shares (the warm start's and the demo's): CPU in fp32, no checkpoints, no loggers.
CPU_RUN = dict(use_cpu=True, bf16=False, activation_checkpointing=False, save_strategy="no", report_to="none")


def train_warmstart(
    output_dir: str | Path,
    seed: int = WARMSTART_SEED,
    max_steps: int = SFT_MAX_STEPS,
    problems: list[Problem] | None = None,
    strategies: tuple[str, ...] = STRATEGIES,
    mix: dict[str, int] | None = None,
    disable_tqdm: bool = False,
) -> Path:
    """Warm-starts the policy with TRL's `SFTTrainer` on worked solutions of the SFT problems.

    Deterministic under `seed` on a given machine (CPU, fp32). The model and the training log are saved to
    `output_dir` with the tokenizer, so the directory loads with `from_pretrained` like any model. `problems` replaces
    the SFT problems of `split_problems(seed)` (e.g. those of a split with a hard family, or the RL problems too, to
    study a policy that has memorised them); every problem is solved once by each of `strategies`, or as `mix` says
    (see `dsdr_trl.toy.task.sft_dataset`).

    Returns:
        `Path`: `output_dir`.
    """
    from trl import SFTConfig, SFTTrainer

    output_dir = Path(output_dir)
    tokenizer = build_task_tokenizer()
    model = build_policy(tokenizer, seed)
    train = split_problems(seed).sft if problems is None else problems
    args = SFTConfig(
        output_dir=str(output_dir),  # it writes nothing there itself: no checkpoints, no loggers
        max_steps=max_steps,
        per_device_train_batch_size=64,
        learning_rate=2e-3,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, max_steps // 20),
        weight_decay=0.01,
        logging_steps=50,
        seed=seed,
        data_seed=seed,
        max_length=64,
        dataset_num_proc=None,
        disable_tqdm=disable_tqdm,
        **CPU_RUN,
    )
    dataset = sft_dataset(train, seed, strategies, mix)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    losses = [entry for entry in trainer.state.log_history if "loss" in entry]
    record = {"seed": seed, "max_steps": max_steps, "strategies": list(strategies), "mix": mix, "log": losses}
    (output_dir / "sft_log.json").write_text(json.dumps(record))
    return output_dir


def shipped_warmstart(name: str) -> Path | None:
    """The directory of the warm start called `name` (e.g. `"original-sft600"`) if it ships with the package."""
    path = WARMSTART_DIR if name == WARMSTART_NAME else ASSETS_DIR / name
    return path if (path / "model.safetensors").exists() else None


def load_policy(path: str | Path | None = None):
    """The warm-started policy and its tokenizer, from `path` or else from the weights shipped in the package.

    Returns:
        `tuple[Qwen3ForCausalLM, PreTrainedTokenizerFast]`
    """
    from transformers import AutoModelForCausalLM

    path = Path(path) if path is not None else WARMSTART_DIR
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"No warm-start weights in {path}. Train them with `train_warmstart(DIR)`.")
    # The policy's generation config (saved with it by `build_model`) already names the tokenizer's pad and eos tokens.
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), build_task_tokenizer()
