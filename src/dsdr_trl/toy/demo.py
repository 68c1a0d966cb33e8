r"""
The demo behind `dsdr-trl demo`: GRPO against DSDR on the embedded toy task, on CPU, in minutes.

Settings are the fields of [`DemoArguments`], which `dsdr-trl demo` parses with TRL's `TrlParser` like `dsdr-trl
train` (snake_case flags, or a YAML file with `--config`). From the warm-started policy of
[`dsdr_trl.toy.warmstart`] (shipped in the package, so no SFT runs here), it trains plain GRPO
(`DSDRConfig(diversity_coef=0, local_entropy_coef=0)`) and DSDR with the same seeds, steps, batch and learning rate,
then samples 16 completions for every held-out problem and reports pass@k for k = 1…16 (unbiased estimator),
avg@16, the number of distinct correct solutions per problem (by formula set), the mean semantic distance among
correct samples, which of the task's three strategies the correct samples use, and the training curves.

The demo's DSDR coefficients were fixed before the two methods were compared, and are not the paper's: λ_d = 0.1
(the paper's 0.001 is for real LLMs; at toy scale with binary rewards 0.1 still keeps every correct completion above
every incorrect one), λ_ℓ = 0.01 (the largest value the paper reports as stable), τ = 5 (the paper's). Both methods
share the paper's backbone: clip-higher ε = (0.2, 0.28), no KL, per-sequence token mean. The RL learning rate
(2e-4) was set from one GRPO-only trial (in 50 steps its training reward rose and its strategy mix narrowed), and the
length doubled to 100 steps to use the time budget; DSDR was not run to choose either.

Torch runs on one thread by default: the model is so small that a second thread barely helps, while on a shared or
busy 2-core machine two threads contend and a step can get many times slower.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .report import LABELS, METHODS, aggregate, make_plots, write_report
from .task import NUM_EVAL_PROBLEMS


@dataclass
class DemoArguments:
    """Everything that defines a demo run; stored in `report.json` so that a run can be repeated."""

    output_dir: str = field(default="outputs/demo", metadata={"help": "Where the report, JSON and plots go."})
    seeds: list[int] = field(
        default_factory=lambda: [0],
        metadata={"help": "Seeds to run, e.g. --seeds 0 1 2; the report gives mean ± std."},
    )
    max_steps: int = field(default=100, metadata={"help": "RL steps per method and seed."})
    prompts_per_step: int = field(default=8, metadata={"help": "Problems per RL step."})
    num_generations: int = field(default=8, metadata={"help": "G, completions per problem."})
    learning_rate: float = field(default=2e-4, metadata={"help": "RL learning rate (constant), both methods."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature during RL."})
    max_completion_length: int = field(default=48, metadata={"help": "Completion cap, RL and evaluation."})
    num_eval_problems: int = field(
        default=NUM_EVAL_PROBLEMS,
        metadata={"help": f"Held-out problems to evaluate on (at most {NUM_EVAL_PROBLEMS})."},
    )
    num_samples: int = field(default=16, metadata={"help": "Samples per held-out problem (the largest k of pass@k)."})
    eval_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the evaluation."})
    # DSDR's coefficients for the toy scale (see the module docstring); GRPO uses 0 for both.
    diversity_coef: float = field(default=0.1, metadata={"help": "DSDR's λ_d (Eq. 10); GRPO uses 0."})
    local_entropy_coef: float = field(default=0.01, metadata={"help": "DSDR's λ_ℓ (Eq. 16); GRPO uses 0."})
    coupling_temperature: float = field(default=5.0, metadata={"help": "DSDR's τ (Eq. 11)."})
    warmstart: str | None = field(
        default=None, metadata={"help": "A directory with warm-start weights (default: the ones in the package)."}
    )
    regenerate_warmstart: str | None = field(
        default=None,
        metadata={
            "help": "Retrain the warm start with SFT from its seed into this directory, print its held-out pass@1 "
            "and pass@16, and exit. Use it with --warmstart DIR afterwards."
        },
    )
    rebuild_report: bool = field(
        default=False,
        metadata={"help": "Only rewrite report.md and the plots in output_dir from its report.json and logs."},
    )
    num_threads: int = field(default=1, metadata={"help": "Torch CPU threads."})
    plots: bool = field(default=True, metadata={"help": "Draw the PNG plots."})

    def __post_init__(self):
        if not self.seeds:
            raise ValueError("--seeds needs at least one seed, e.g. --seeds 0 1 2.")
        if not 1 <= self.num_eval_problems <= NUM_EVAL_PROBLEMS:
            raise ValueError(
                f"--num_eval_problems must lie in [1, {NUM_EVAL_PROBLEMS}], got {self.num_eval_problems}."
            )
        if self.num_generations < 2:
            raise ValueError(
                f"--num_generations must be at least 2 (GRPO compares a group), got {self.num_generations}."
            )
        for name in ("max_steps", "prompts_per_step", "num_samples", "max_completion_length", "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be a positive integer, got {getattr(self, name)}.")


# ---------------------------------------------------------------------------------------------------------------------
# Training


def make_mode_monitor(group_size: int):
    """A zero-weight reward function that logs which strategies the correct completions of each step use.

    It logs `toy/modes_per_group` (distinct strategies among the correct completions of a group, averaged over groups
    with a correct one) and `toy/share_<strategy>` (the share of correct completions using each strategy), so the
    mode collapse can be watched for GRPO too, which computes no diversity scores. Correctness here is an exact match
    of the boxed integer, which is what `accuracy_reward` decides on this task, without a second verifier call.
    """
    from ..rewards import extract_answer
    from .task import STRATEGIES, solution_strategy

    def toy_modes(completions: list[str], solution: list[str], log_metric=None, **kwargs) -> list[float]:
        strategies = [
            solution_strategy(text) if extract_answer(text) == gold else None
            for text, gold in zip(completions, solution, strict=True)
        ]
        if log_metric is not None:
            groups = [strategies[i : i + group_size] for i in range(0, len(strategies), group_size)]
            modes = [len({s for s in group if s}) for group in groups if any(group)]
            counts = Counter(s for s in strategies if s)
            total = sum(counts.values())
            log_metric("toy/modes_per_group", sum(modes) / len(modes) if modes else 0.0)
            for name in STRATEGIES:
                log_metric(f"toy/share_{name}", counts[name] / total if total else 0.0)
        return [0.0] * len(completions)

    return toy_modes


def train_method(
    method: str, seed: int, settings: DemoArguments, warmstart: Path, encoder: Any, train_dataset: Any, run_dir: Path
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Trains `"grpo"` or `"dsdr"` from the warm start with `DSDRGRPOTrainer`; GRPO is the same trainer with both DSDR
    coefficients at 0, so the two runs differ in nothing else.

    Returns:
        `tuple`: the trained model, its tokenizer, and the trainer's per-step log history.
    """
    from ..config import DSDRConfig
    from ..rewards import accuracy_reward
    from ..trainer import DSDRGRPOTrainer
    from .warmstart import load_policy

    model, tokenizer = load_policy(warmstart)
    dsdr = method == "dsdr"
    args = DSDRConfig(
        output_dir=str(run_dir),
        seed=seed,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.prompts_per_step * settings.num_generations,
        num_generations=settings.num_generations,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        temperature=settings.temperature,
        max_completion_length=settings.max_completion_length,
        # The monitor only logs; its zero weight keeps the reward, and so both methods' advantages, untouched.
        reward_weights=[1.0, 0.0],
        diversity_coef=settings.diversity_coef if dsdr else 0.0,
        local_entropy_coef=settings.local_entropy_coef if dsdr else 0.0,
        coupling_temperature=settings.coupling_temperature,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        disable_tqdm=False,
    )
    trainer = DSDRGRPOTrainer(
        model=model,
        reward_funcs=[accuracy_reward, make_mode_monitor(settings.num_generations)],
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        diversity_encoder=encoder if dsdr else None,
    )
    trainer.train()
    history = [entry for entry in trainer.state.log_history if "reward" in entry]
    return trainer.model, tokenizer, history


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation


def evaluate(
    model: Any, tokenizer: Any, problems: list, settings: DemoArguments, seed: int, encoder: Any
) -> dict[str, Any]:
    """Samples `num_samples` completions per held-out problem and returns pass@k, avg@N and the diversity numbers."""
    from ..evaluation import diversity_of_samples, generate_samples, score_samples, summarize
    from .task import STRATEGIES, solution_strategy

    samples = generate_samples(
        model,
        tokenizer,
        [p.prompt for p in problems],
        num_samples=settings.num_samples,
        temperature=settings.eval_temperature,
        top_p=1.0,
        max_new_tokens=settings.max_completion_length,
        batch_size=256,
        seed=seed,
    )
    correct = score_samples(samples, [p.answer for p in problems])
    diversity = diversity_of_samples(samples, correct, encoder)
    result = summarize(samples, correct, range(1, settings.num_samples + 1), diversity=diversity)
    used = Counter(
        solution_strategy(text) or "other"
        for group, flags in zip(samples, correct, strict=True)
        for text, ok in zip(group, flags, strict=True)
        if ok
    )
    total = sum(used.values())
    modes = [
        len({solution_strategy(t) for t, ok in zip(group, flags, strict=True) if ok} - {None})
        for group, flags in zip(samples, correct, strict=True)
    ]
    return {
        "pass@k": {str(k): v for k, v in result.pass_at_k.items()},
        f"avg@{settings.num_samples}": result.avg_accuracy,
        "distinct_correct": result.diversity.get("distinct_correct"),
        "semantic_distance": result.diversity.get("semantic_distance"),
        "strategies_per_problem": sum(modes) / len(modes),
        "strategy_share": {name: used[name] / total if total else 0.0 for name in (*STRATEGIES, "other")},
        "examples": {p.prompt: group[:4] for p, group in list(zip(problems, samples, strict=True))[:3]},
    }


# ---------------------------------------------------------------------------------------------------------------------
# Entry points


def resolve_warmstart(settings: DemoArguments) -> Path:
    """The warm start to use: `--warmstart`, else the weights shipped in the package."""
    from .warmstart import WARMSTART_DIR

    path = Path(settings.warmstart) if settings.warmstart else WARMSTART_DIR
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(
            f"No warm-start weights (model.safetensors) in {path}; train some with --regenerate_warmstart {path}."
        )
    return path


def run_demo(settings: DemoArguments) -> dict[str, Any]:
    """Runs the whole comparison and writes `report.md`, `report.json` and the plots; returns the report."""
    import torch

    from ..encoder import load_diversity_encoder
    from .task import rl_dataset, split_problems
    from .warmstart import load_policy

    torch.set_num_threads(settings.num_threads)
    start = time.time()
    output_dir = Path(settings.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    warmstart = resolve_warmstart(settings)
    splits = split_problems()
    eval_problems = splits.held_out[: settings.num_eval_problems]
    train_dataset = rl_dataset(splits.rl)
    encoder = load_diversity_encoder()

    per_seed: dict[str, list[dict[str, Any]]] = {"warmstart": [], **{m: [] for m in METHODS}}
    histories: dict[str, list[list[dict]]] = {m: [] for m in METHODS}
    for seed in settings.seeds:
        print(f"[demo] seed {seed}: evaluating the warm start")
        model, tokenizer = load_policy(warmstart)
        per_seed["warmstart"].append(evaluate(model, tokenizer, eval_problems, settings, seed, encoder))
        for method in METHODS:
            print(f"[demo] seed {seed}: training {LABELS[method]} for {settings.max_steps} steps")
            run_dir = output_dir / "runs" / f"{method}-seed{seed}"
            model, tokenizer, history = train_method(
                method, seed, settings, warmstart, encoder, train_dataset, run_dir
            )
            histories[method].append(history)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "log_history.json").write_text(json.dumps(history, indent=1))
            print(f"[demo] seed {seed}: evaluating {LABELS[method]}")
            per_seed[method].append(evaluate(model, tokenizer, eval_problems, settings, seed, encoder))

    report: dict[str, Any] = {
        "seeds": settings.seeds,
        "wall_seconds": None,
        "settings": asdict(settings) | {"warmstart": str(warmstart)},
        "methods": {name: aggregate(runs, settings.num_samples) for name, runs in per_seed.items()},
    }
    plots = make_plots(report, histories, output_dir) if settings.plots else []
    report["wall_seconds"] = time.time() - start
    (output_dir / "report.json").write_text(json.dumps(report, indent=1))
    write_report(report, output_dir, plots)
    return report


def regenerate_warmstart(directory: str) -> int:
    """Retrains the warm start from its seed into `directory` and prints its held-out pass@1 and pass@16."""
    import torch

    from ..encoder import load_diversity_encoder
    from .task import split_problems
    from .warmstart import load_policy, train_warmstart

    target = Path(directory)
    if target.resolve() == Path(__file__).parent.resolve() / "assets" / "warmstart":
        raise ValueError("--regenerate_warmstart must name a directory outside the installed package.")
    torch.set_num_threads(1)
    train_warmstart(target)
    model, tokenizer = load_policy(target)
    result = evaluate(model, tokenizer, split_problems().held_out, DemoArguments(), 0, load_diversity_encoder())
    print(
        f"warm start in {target}: held-out pass@1 {100 * result['pass@k']['1']:.1f} %, "
        f"pass@16 {100 * result['pass@k']['16']:.1f} %, strategies {result['strategy_share']}"
    )
    return 0
