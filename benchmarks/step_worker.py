"""One timed training run, GRPO or DSDR, in a fresh process: per-step wall times and peak memory as JSON.

`benchmarks/run.py` launches this script once per (method, config, repetition), alternating the methods, so that the
two sides of every ratio run under the same conditions. A fresh process per run keeps the peak-memory figure honest
(nothing from the other method stays resident) and keeps caches (formula extraction, the time-limit worker) cold.

    python benchmarks/step_worker.py --method dsdr --config long --steps 4 --out run.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# name -> (policy hidden size, layers, intermediate size, heads, KV heads, G, prompts per optimizer step, tokens).
# "tiny" is the test-suite model; "long" keeps it but generates 256 tokens for G = 8; "policy" is a policy a few times
# the encoder's size (all-MiniLM-L6-v2: 22.7M parameters, 6 layers of width 384) at the same generation length.
CONFIGS = {
    "tiny": dict(hidden=16, layers=2, intermediate=32, heads=2, kv_heads=1, group=4, prompts=2, tokens=8),
    "long": dict(hidden=16, layers=2, intermediate=32, heads=2, kv_heads=1, group=8, prompts=2, tokens=256),
    "policy": dict(hidden=512, layers=8, intermediate=1536, heads=8, kv_heads=2, group=8, prompts=2, tokens=256),
}

PROMPTS = [
    "Solve for x: 2x + 3 = 7.",
    "What is 12 times 7?",
    "Compute 1/2 + 1/3.",
    "Let a^2 + b^2 = c^2 with a = 3, b = 4. Find c.",
    "What is the sum 1 + 2 + 3?",
    "Find the product 2 * 3.",
    "Simplify (x + 1)^2 - x^2.",
    "How many primes are below 20?",
]


def parity_reward(completions, **kwargs):
    """A cheap, deterministic stand-in verifier: about half of the completions are 'correct'."""
    return [float(len(c) % 2 == 0) for c in completions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("grpo", "dsdr"), required=True)
    parser.add_argument("--config", choices=sorted(CONFIGS), required=True)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps; the first one is a warm-up")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    from dsdr_trl.toy.models import build_model as build_tiny_model
    from dsdr_trl.toy.models import build_tiny_tokenizer

    spec = CONFIGS[args.config]
    cuda = torch.cuda.is_available()
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(
        tokenizer,
        hidden_size=spec["hidden"],
        intermediate_size=spec["intermediate"],
        num_layers=spec["layers"],
        num_heads=spec["heads"],
        num_kv_heads=spec["kv_heads"],
    )
    dataset = Dataset.from_dict({"prompt": PROMPTS})
    rows = spec["prompts"] * spec["group"]
    common = dict(
        output_dir=str(Path(args.out).with_suffix("")),
        use_cpu=not cuda,
        bf16=cuda,
        activation_checkpointing=False,
        per_device_train_batch_size=rows // 2,
        gradient_accumulation_steps=2,
        num_generations=spec["group"],
        max_completion_length=spec["tokens"],
        # Every completion has exactly `tokens` tokens on both sides, so the two methods do the same generation work.
        generation_kwargs={"min_new_tokens": spec["tokens"]},
        max_steps=args.steps,
        learning_rate=1e-5,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    # DSDR's backbone (clip-higher, no KL, per-sequence mean) on both sides: the ratio isolates DSDR's own terms.
    backbone = dict(epsilon_high=0.28, beta=0.0, loss_type="grpo")
    if args.method == "dsdr":
        from dsdr_trl import DSDRConfig, DSDRGRPOTrainer

        trainer_cls, config = DSDRGRPOTrainer, DSDRConfig(**common)
    else:
        from trl import GRPOConfig, GRPOTrainer

        trainer_cls, config = GRPOTrainer, GRPOConfig(**common, **backbone)

    step_ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_train_begin(self, *_, **__):
            step_ends.append(time.perf_counter())

        def on_step_end(self, *_, **__):
            if cuda:
                torch.cuda.synchronize()
            step_ends.append(time.perf_counter())

    trainer = trainer_cls(
        model=model,
        reward_funcs=parity_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[StepClock()],
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    step_times = [end - start for start, end in zip(step_ends, step_ends[1:], strict=False)]
    result = {
        "method": args.method,
        "config": args.config,
        "policy_parameters": sum(p.numel() for p in model.parameters()),
        "rows_per_step": rows,
        "completion_tokens": spec["tokens"],
        "step_times": step_times,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_cuda_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
