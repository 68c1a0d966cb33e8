"""Scores one fixed generation batch with DSDRGRPOTrainer and writes the bonus, ω and advantages as JSON.

Run as one process (`python distributed_scoring.py OUT.json`) or several (`torchrun --standalone --nproc_per_node 2
distributed_scoring.py OUT.json`): with 2 processes, rank r holds rows [6r, 6r+6) of the 12-row batch, so the second
group of 4 straddles the two processes. `tests/test_distributed.py` compares the outputs, then this script also runs
two training steps to show the per-row DSDR tensors survive TRL's distributed buffering.
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from helpers import TINY_CPU, build_tiny_model, build_tiny_tokenizer  # noqa: E402

from dsdr_trl import DSDRConfig, DSDRGRPOTrainer  # noqa: E402
from dsdr_trl.rewards import accuracy_reward  # noqa: E402

GROUP_SIZE = 4
BATCH = [
    # Group A (rank 0): two correct solutions by different routes, two wrong.
    ("Compute 12*7.", "84", "We split $12 \\cdot 7 = 10 \\cdot 7 + 2 \\cdot 7 = 70 + 14$. Answer: \\boxed{84}"),
    ("Compute 12*7.", "84", "Doubling: $12 \\cdot 7 = 6 \\cdot 14 = 84$, so \\boxed{84}."),
    ("Compute 12*7.", "84", "I think $12 \\cdot 7 = 72$. \\boxed{72}"),
    ("Compute 12*7.", "84", "No idea."),
    # Group B (straddles ranks 0 and 1): three correct, one wrong.
    ("Solve 2x+3=7.", "2", "Subtract: $2x = 4$, divide: $x = 2$. \\boxed{2}"),
    ("Solve 2x+3=7.", "2", "Try $x = 2$: $2 \\cdot 2 + 3 = 7$ holds. Answer: 2"),
    ("Solve 2x+3=7.", "2", "Subtract 3 from both sides to get $2x = 4$, then $x = 2$. \\boxed{2}"),
    ("Solve 2x+3=7.", "2", "$x = 5$ \\boxed{5}"),
    # Group C (rank 1): all correct, distinct.
    (
        "Add 1/2 and 1/3.",
        "\\frac{5}{6}",
        "Common denominator: $\\frac{3}{6} + \\frac{2}{6} = \\frac{5}{6}$. \\boxed{\\frac{5}{6}}",
    ),
    ("Add 1/2 and 1/3.", "\\frac{5}{6}", "Decimals: $0.5 + 0.333... \\approx 0.8333$, which is \\boxed{\\frac{5}{6}}"),
    ("Add 1/2 and 1/3.", "\\frac{5}{6}", "$\\frac{1 \\cdot 3 + 1 \\cdot 2}{2 \\cdot 3} = \\frac{5}{6}$ \\boxed{5/6}"),
    ("Add 1/2 and 1/3.", "\\frac{5}{6}", "The answer is \\boxed{\\frac{5}{6}}."),
]


def main(out_path: str) -> None:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rows_per_process = len(BATCH) // world_size
    tokenizer = build_tiny_tokenizer()
    dataset = Dataset.from_dict(
        {"prompt": [p for p, _, _ in BATCH[::GROUP_SIZE]], "solution": [s for _, s, _ in BATCH[::GROUP_SIZE]]}
    )
    config = DSDRConfig(
        output_dir=os.path.join(os.path.dirname(out_path), f"run-{world_size}"),
        **TINY_CPU,
        per_device_train_batch_size=rows_per_process,
        num_generations=GROUP_SIZE,
        max_completion_length=8,
        max_steps=2,
        seed=3,
        diversity_coef=0.1,  # large enough that bonuses differ visibly between rows
    )
    trainer = DSDRGRPOTrainer(
        model=build_tiny_model(tokenizer),
        reward_funcs=accuracy_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    rank = trainer.accelerator.process_index
    local = BATCH[rank * rows_per_process : (rank + 1) * rows_per_process]
    inputs = [{"prompt": prompt, "solution": solution} for prompt, solution, _ in local]
    completions = [completion for _, _, completion in local]
    completion_ids = [tokenizer(c).input_ids for c in completions]

    trainer.model.train()
    rewards_per_func = trainer._calculate_rewards(inputs, [x["prompt"] for x in inputs], completions, completion_ids)
    pending = trainer._dsdr_pending
    result = {
        "world_size": world_size,
        "correct": pending["correct"].tolist(),
        "bonus": rewards_per_func[:, -1].tolist(),
        "weights": pending["weights"].tolist(),
        "advantages": pending["advantages"].tolist(),
    }
    trainer._dsdr_pending = None
    trainer._metrics["train"].clear()

    trainer.train()
    steps = [log for log in trainer.state.log_history if "loss" in log]
    result["train_steps"] = len(steps)
    result["train_metrics_finite"] = all(torch.isfinite(torch.tensor(log["loss"])).item() for log in steps)
    result["train_has_dsdr_metrics"] = all("dsdr/local_entropy" in log for log in steps)
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
