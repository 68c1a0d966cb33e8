r"""
`dsdr-trl demo`: GRPO against DSDR on the embedded toy task, on CPU, in minutes.

    dsdr-trl demo                          # one seed, writes outputs/demo/{report.md,report.json,*.png}
    dsdr-trl demo --seeds 3                # seeds 0, 1, 2; the report gives mean ± std
    dsdr-trl demo --regenerate-warmstart   # retrain the shipped SFT warm start from its seed, then exit
    dsdr-trl demo --rebuild-report         # rewrite report.md and plots from a finished run's JSON and logs

From the warm-started policy of [`dsdr_trl.toy`] (shipped in the package, so no SFT runs here), it trains plain GRPO
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

import argparse
import json
import math
import os
import shutil
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

METHODS = ("grpo", "dsdr")
LABELS = {"warmstart": "warm start (SFT)", "grpo": "GRPO", "dsdr": "DSDR"}


@dataclass
class DemoSettings:
    """Everything that defines a demo run; stored in `report.json` so a run can be repeated."""

    output_dir: str = "outputs/demo"
    seeds: list[int] = field(default_factory=lambda: [0])
    max_steps: int = 100
    prompts_per_step: int = 8
    num_generations: int = 8
    learning_rate: float = 2e-4
    temperature: float = 1.0
    max_completion_length: int = 48
    num_eval_problems: int = 96
    num_samples: int = 16
    eval_temperature: float = 1.0
    # DSDR's coefficients for the toy scale (see the module docstring); GRPO uses 0 for both.
    diversity_coef: float = 0.1
    local_entropy_coef: float = 0.01
    coupling_temperature: float = 5.0
    warmstart: str | None = None
    num_threads: int = 1
    plots: bool = True


def build_parser() -> argparse.ArgumentParser:
    defaults = DemoSettings()
    parser = argparse.ArgumentParser(
        prog="dsdr-trl demo",
        description="Train GRPO and DSDR from the same warm start on an embedded toy task (2-digit × 1-digit "
        "multiplication with three solution strategies), evaluate both on held-out problems, and write a report.",
    )
    parser.add_argument("--output-dir", default=defaults.output_dir, help="Where the report, JSON and plots go.")
    parser.add_argument("--seeds", type=int, default=1, help="Run seeds 0 … N-1 and report mean ± std.")
    parser.add_argument("--seed-list", default=None, help="Explicit comma-separated seeds; overrides --seeds.")
    parser.add_argument("--max-steps", type=int, default=defaults.max_steps, help="RL steps per method and seed.")
    parser.add_argument(
        "--prompts-per-step", type=int, default=defaults.prompts_per_step, help="Problems per RL step."
    )
    parser.add_argument(
        "--num-generations", type=int, default=defaults.num_generations, help="G, completions per problem."
    )
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument(
        "--num-eval-problems",
        type=int,
        default=defaults.num_eval_problems,
        help=f"Held-out problems to evaluate on (at most {defaults.num_eval_problems}).",
    )
    parser.add_argument(
        "--num-samples", type=int, default=defaults.num_samples, help="Samples per held-out problem (max k)."
    )
    parser.add_argument("--diversity-coef", type=float, default=defaults.diversity_coef, help="DSDR's λ_d.")
    parser.add_argument("--local-entropy-coef", type=float, default=defaults.local_entropy_coef, help="DSDR's λ_ℓ.")
    parser.add_argument("--coupling-temperature", type=float, default=defaults.coupling_temperature, help="DSDR's τ.")
    parser.add_argument(
        "--warmstart", default=None, help="A directory with warm-start weights (default: the ones in the package)."
    )
    parser.add_argument(
        "--regenerate-warmstart",
        action="store_true",
        help="Retrain the warm start with SFT from its seed into --warmstart (default: the package's asset "
        "directory), print its held-out pass@1, and exit.",
    )
    parser.add_argument("--num-threads", type=int, default=defaults.num_threads, help="Torch CPU threads.")
    parser.add_argument("--no-plots", action="store_true", help="Skip the PNG plots.")
    parser.add_argument(
        "--rebuild-report",
        action="store_true",
        help="Only rewrite report.md and the plots in --output-dir from its report.json and logs (no training).",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    if args.seed_list:
        seeds = [int(seed) for seed in args.seed_list.split(",") if seed.strip()]
    else:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be at least 1, got {args.seeds}.")
        seeds = list(range(args.seeds))
    from .toy import NUM_EVAL_PROBLEMS

    if not 1 <= args.num_eval_problems <= NUM_EVAL_PROBLEMS:
        raise ValueError(f"--num-eval-problems must lie in [1, {NUM_EVAL_PROBLEMS}], got {args.num_eval_problems}.")
    if args.num_generations < 2:
        raise ValueError(f"--num-generations must be at least 2 (GRPO compares a group), got {args.num_generations}.")
    return DemoSettings(
        output_dir=args.output_dir,
        seeds=seeds,
        max_steps=args.max_steps,
        prompts_per_step=args.prompts_per_step,
        num_generations=args.num_generations,
        learning_rate=args.learning_rate,
        num_eval_problems=args.num_eval_problems,
        num_samples=args.num_samples,
        diversity_coef=args.diversity_coef,
        local_entropy_coef=args.local_entropy_coef,
        coupling_temperature=args.coupling_temperature,
        warmstart=args.warmstart,
        num_threads=args.num_threads,
        plots=not args.no_plots,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Training


def make_mode_monitor(group_size: int):
    """A zero-weight reward function that logs which strategies the correct completions of each step use.

    It logs `toy/modes_per_group` (distinct strategies among the correct completions of a group, averaged over groups
    with a correct one) and `toy/share_<strategy>` (the share of correct completions using each strategy), so the
    mode collapse can be watched for GRPO too, which computes no diversity scores. Correctness here is an exact match
    of the boxed integer, which is what `accuracy_reward` decides on this task, without a second verifier call.
    """
    from .rewards import extract_answer
    from .toy import STRATEGIES, solution_strategy

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
    method: str, seed: int, settings: DemoSettings, warmstart: Path, encoder: Any, train_dataset: Any, run_dir: Path
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """Trains `"grpo"` or `"dsdr"` from the warm start with `DSDRGRPOTrainer`; GRPO is the same trainer with both DSDR
    coefficients at 0, so the two runs differ in nothing else.

    Returns:
        `tuple`: the trained model, its tokenizer, and the trainer's per-step log history.
    """
    from .config import DSDRConfig
    from .rewards import accuracy_reward
    from .toy import load_policy
    from .trainer import DSDRGRPOTrainer

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
    model: Any, tokenizer: Any, problems: list, settings: DemoSettings, seed: int, encoder: Any
) -> dict[str, Any]:
    """Samples `num_samples` completions per held-out problem and returns pass@k, avg@N and the diversity numbers."""
    from .evaluation import diversity_of_samples, generate_samples, score_samples, summarize
    from .toy import STRATEGIES, solution_strategy

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
# Report


def _scalar_keys(settings: DemoSettings) -> list[str]:
    return [f"avg@{settings.num_samples}", "distinct_correct", "semantic_distance", "strategies_per_problem"]


def aggregate(per_seed: list[dict[str, Any]], settings: DemoSettings) -> dict[str, Any]:
    """Mean (and std over seeds, when there are several) of every number of the per-seed evaluations."""

    def stats(values: list[float | None]) -> tuple[float | None, float | None]:
        values = [v for v in values if v is not None and not math.isnan(v)]
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    out: dict[str, Any] = {"pass@k": {}, "pass@k_std": {}}
    for k in per_seed[0]["pass@k"]:
        out["pass@k"][k], out["pass@k_std"][k] = stats([run["pass@k"][k] for run in per_seed])
    for key in _scalar_keys(settings):
        out[key], out[f"{key}_std"] = stats([run[key] for run in per_seed])
    out["strategy_share"] = {
        name: statistics.fmean(run["strategy_share"][name] for run in per_seed)
        for name in per_seed[0]["strategy_share"]
    }
    out["per_seed"] = per_seed
    return out


def _cell(method: dict[str, Any], key: str, k: str | None = None, percent: bool = True) -> str:
    mean = method["pass@k"][k] if k else method[key]
    std = method["pass@k_std"][k] if k else method.get(f"{key}_std")
    if mean is None:
        return "–"
    scale = 100 if percent else 1
    cell = f"{scale * mean:.1f}" if percent else f"{mean:.2f}"
    if std is not None and len(method["per_seed"]) > 1:
        cell += f" ± {scale * std:.1f}" if percent else f" ± {std:.2f}"
    return cell


def results_table(report: dict[str, Any]) -> str:
    """The report's main markdown table: one row per method."""
    n = report["settings"]["num_samples"]
    ks = [k for k in ("1", "2", "4", "8", "16") if int(k) <= n]
    header = ["method", *[f"pass@{k} %" for k in ks], f"avg@{n} %", "distinct correct", "strategies", "sem. dist."]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name, method in report["methods"].items():
        cells = [LABELS[name], *[_cell(method, "", k) for k in ks], _cell(method, f"avg@{n}")]
        cells += [
            _cell(method, "distinct_correct", percent=False),
            _cell(method, "strategies_per_problem", percent=False),
        ]
        cells.append(_cell(method, "semantic_distance", percent=False))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _difference(report: dict[str, Any], key: str, k: str | None = None) -> tuple[float, float | None]:
    """DSDR minus GRPO on one number, and the standard error of that difference over seeds (`None` for one seed)."""
    grpo, dsdr = report["methods"]["grpo"], report["methods"]["dsdr"]
    if k is not None:
        delta, stds = dsdr["pass@k"][k] - grpo["pass@k"][k], (grpo["pass@k_std"][k], dsdr["pass@k_std"][k])
    else:
        delta, stds = dsdr[key] - grpo[key], (grpo[f"{key}_std"], dsdr[f"{key}_std"])
    seeds = len(report["seeds"])
    return delta, math.sqrt((stds[0] ** 2 + stds[1] ** 2) / seeds) if seeds > 1 else None


def _verdict(report: dict[str, Any]) -> str:
    """The comparison in words; with several seeds a gap counts only when it exceeds twice its standard error."""
    n = str(report["settings"]["num_samples"])
    rows = [
        ("pass@1", *_difference(report, "", "1"), 100, "points"),
        (f"pass@{n}", *_difference(report, "", n), 100, "points"),
        ("distinct correct solutions per problem", *_difference(report, "distinct_correct"), 1, ""),
    ]
    methods = report["methods"]
    lines, clear_wins, clear_losses = [], 0, 0
    for name in METHODS:
        start, end = methods["warmstart"], methods[name]
        lines.append(
            f"- {LABELS[name]} from the warm start: pass@1 {100 * start['pass@k']['1']:.1f} → "
            f"{100 * end['pass@k']['1']:.1f} %, pass@{n} {100 * start['pass@k'][n]:.1f} → "
            f"{100 * end['pass@k'][n]:.1f} %, distinct correct {start['distinct_correct']:.2f} → "
            f"{end['distinct_correct']:.2f}."
        )
    for label, delta, error, scale, unit in rows:
        line = f"- {label}: DSDR {scale * delta:+.{1 if scale == 100 else 2}f} {unit} against GRPO".replace("  ", " ")
        if error is not None:
            line += f" (standard error {scale * error:.{1 if scale == 100 else 2}f})"
            clear_wins += delta > 2 * error
            clear_losses += delta < -2 * error
        lines.append(line + ".")
    if len(report["seeds"]) == 1:
        lines.append("\nOne seed cannot separate the methods from run-to-run noise: run `--seeds 3` for mean ± std.")
    elif clear_wins and not clear_losses:
        lines.append("\nDSDR is ahead of GRPO by more than twice the standard error on at least one of these numbers.")
    elif clear_losses and not clear_wins:
        lines.append("\nGRPO is ahead of DSDR by more than twice the standard error on at least one of these numbers.")
    else:
        lines.append(
            "\nNone of these gaps exceeds twice its standard error: with these settings the demo does **not** show "
            "DSDR beating GRPO."
        )
    return "\n".join(lines)


def write_report(report: dict[str, Any], output_dir: Path, plots: list[str]) -> None:
    settings = report["settings"]
    strategies = "\n".join(
        f"| {LABELS[name]} | " + " | ".join(f"{100 * share:.0f}" for share in method["strategy_share"].values()) + " |"
        for name, method in report["methods"].items()
    )
    share_header = " | ".join(report["methods"]["grpo"]["strategy_share"])
    text = f"""# DSDR vs GRPO on the toy multiplication task

- Seeds: {", ".join(map(str, report["seeds"]))}. Wall time: {report["wall_seconds"] / 60:.1f} min.
- RL: {settings["max_steps"]} steps per method and seed, {settings["prompts_per_step"]} problems × G = \
{settings["num_generations"]} completions per step, learning rate {settings["learning_rate"]}, temperature \
{settings["temperature"]}; clip-higher ε = (0.2, 0.28), no KL, for both methods.
- DSDR: λ_d = {settings["diversity_coef"]}, λ_ℓ = {settings["local_entropy_coef"]}, \
τ = {settings["coupling_temperature"]}, chosen for the toy scale before the comparison (the paper's \
λ_d = λ_ℓ = 0.001 are for real LLMs). GRPO is the same trainer with λ_d = λ_ℓ = 0.
- Evaluation: {settings["num_eval_problems"]} held-out problems (disjoint from the SFT and RL problems) × \
{settings["num_samples"]} samples at temperature {settings["eval_temperature"]}.

## Held-out results{" (mean ± std over seeds)" if len(report["seeds"]) > 1 else ""}

{results_table(report)}

*distinct correct*: distinct formula sets among a problem's correct samples; *strategies*: how many of the three
strategies (split, round, carry) the correct samples of a problem use; *sem. dist.*: mean pairwise semantic distance
`(1 − cos)/2` among correct samples (all-MiniLM-L6-v2). pass@k is the unbiased estimator, averaged over problems.

{_verdict(report)}

## Which strategies the correct samples use (% of correct samples)

| method | {share_header} |
|---|{"---:|" * len(report["methods"]["grpo"]["strategy_share"])}
{strategies}

## Plots

{chr(10).join(f"![{name}]({name})" for name in plots)}
"""
    (output_dir / "report.md").write_text(text)


SMOOTHING_STEPS = 10


def _running_mean(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last `window` values (fewer at the start)."""
    out, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        out.append(total / min(index + 1, window))
    return out


def make_plots(report: dict[str, Any], histories: dict[str, list[list[dict]]], output_dir: Path) -> list[str]:
    """Writes `pass_at_k.png` and `training_curves.png`; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    colors = {"warmstart": "tab:gray", "grpo": "tab:blue", "dsdr": "tab:red"}
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, method in report["methods"].items():
        ks = [int(k) for k in method["pass@k"]]
        mean = [100 * method["pass@k"][str(k)] for k in ks]
        std = [100 * method["pass@k_std"][str(k)] for k in ks]
        ax.plot(ks, mean, marker="o", ms=3, label=LABELS[name], color=colors[name])
        low = [m - s for m, s in zip(mean, std, strict=True)]
        high = [m + s for m, s in zip(mean, std, strict=True)]
        ax.fill_between(ks, low, high, alpha=0.2, color=colors[name])
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.set_title("Held-out pass@k (unbiased estimator)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(output_dir / "pass_at_k.png", dpi=120)
    plt.close(fig)

    panels = [
        ("reward", "accuracy (train reward)"),
        ("entropy", "policy entropy (nats/token)"),
        ("toy/modes_per_group", "strategies among correct, per group"),
        ("dsdr/frac_zero_std_after", "groups with zero advantage"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for name, runs in histories.items():
            for index, history in enumerate(runs):
                steps = [entry["step"] for entry in history if key in entry]
                values = [entry[key] for entry in history if key in entry]
                # A step sees only a few problems, so the raw curves are noisy: draw them faint under a running mean.
                ax.plot(steps, values, color=colors[name], alpha=0.2, lw=0.8)
                smooth = _running_mean(values, SMOOTHING_STEPS)
                ax.plot(steps, smooth, color=colors[name], lw=1.5, label=LABELS[name] if index == 0 else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(output_dir / "training_curves.png", dpi=120)
    plt.close(fig)
    return ["pass_at_k.png", "training_curves.png"]


# ---------------------------------------------------------------------------------------------------------------------
# Entry points


def resolve_warmstart(settings: DemoSettings) -> Path:
    """The warm start to use: `--warmstart`, else the shipped weights, else one trained (once) under the output dir."""
    from .toy import ASSET_DIR, train_warmstart

    if settings.warmstart:
        path = Path(settings.warmstart)
        if not (path / "model.safetensors").exists():
            raise FileNotFoundError(f"No warm-start weights (model.safetensors) in {path}.")
        return path
    if (ASSET_DIR / "model.safetensors").exists():
        return ASSET_DIR
    cached = Path(settings.output_dir) / "warmstart"
    if not (cached / "model.safetensors").exists():
        print(f"No shipped warm start; training one with SFT into {cached} (once; later runs reuse it).")
        train_warmstart(cached)
    return cached


def run_demo(settings: DemoSettings) -> dict[str, Any]:
    """Runs the whole comparison and writes `report.md`, `report.json` and the plots; returns the report."""
    import torch

    from .toy import rl_dataset, split_problems
    from .trainer import load_diversity_encoder

    torch.set_num_threads(settings.num_threads)
    start = time.time()
    output_dir = Path(settings.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    warmstart = resolve_warmstart(settings)
    splits = split_problems()
    eval_problems = splits.held_out[: settings.num_eval_problems]
    train_dataset = rl_dataset(splits.rl)
    encoder = load_diversity_encoder("sentence-transformers/all-MiniLM-L6-v2", "cpu", 256)

    from .toy import load_policy

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
            (run_dir).mkdir(parents=True, exist_ok=True)
            (run_dir / "log_history.json").write_text(json.dumps(history, indent=1))
            print(f"[demo] seed {seed}: evaluating {LABELS[method]}")
            per_seed[method].append(evaluate(model, tokenizer, eval_problems, settings, seed, encoder))

    report: dict[str, Any] = {
        "seeds": settings.seeds,
        "wall_seconds": None,
        "settings": asdict(settings) | {"warmstart": str(warmstart)},
        "methods": {name: aggregate(runs, settings) for name, runs in per_seed.items()},
    }
    report["wall_seconds"] = time.time() - start
    plots = make_plots(report, histories, output_dir) if settings.plots else []
    report["wall_seconds"] = time.time() - start
    (output_dir / "report.json").write_text(json.dumps(report, indent=1))
    write_report(report, output_dir, plots)
    return report


def rebuild_report(output_dir: str | Path) -> dict[str, Any]:
    """Rewrites `report.md` and the plots of a finished run from its `report.json` and logs, without training."""
    output_dir = Path(output_dir)
    report = json.loads((output_dir / "report.json").read_text())
    histories = {
        method: [
            json.loads((output_dir / "runs" / f"{method}-seed{seed}" / "log_history.json").read_text())
            for seed in report["seeds"]
        ]
        for method in METHODS
    }
    plots = make_plots(report, histories, output_dir) if report["settings"].get("plots", True) else []
    write_report(report, output_dir, plots)
    return report


def regenerate_warmstart(path: str | None) -> int:
    """Retrains the warm start from its seed and prints its held-out pass@1 and pass@16."""
    import torch

    from .toy import ASSET_DIR, load_policy, split_problems, train_warmstart
    from .trainer import load_diversity_encoder

    torch.set_num_threads(1)
    target = Path(path) if path else ASSET_DIR
    train_warmstart(target)
    shutil.rmtree(
        target / "checkpoints", ignore_errors=True
    )  # the trainer's scratch directory; nothing is saved there
    model, tokenizer = load_policy(target)
    eval_problems = split_problems().held_out
    encoder = load_diversity_encoder("sentence-transformers/all-MiniLM-L6-v2", "cpu", 256)
    result = evaluate(model, tokenizer, eval_problems, DemoSettings(), 0, encoder)
    print(
        f"warm start in {target}: held-out pass@1 {100 * result['pass@k']['1']:.1f} %, "
        f"pass@16 {100 * result['pass@k']['16']:.1f} %, strategies {result['strategy_share']}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    if args.regenerate_warmstart:
        return regenerate_warmstart(args.warmstart)
    if args.rebuild_report:
        report = rebuild_report(args.output_dir)
        print(results_table(report))
        return 0
    settings = settings_from_args(args)
    report = run_demo(settings)
    print()
    print(results_table(report))
    print(f"\nWrote {settings.output_dir}/report.md, report.json and plots in {report['wall_seconds'] / 60:.1f} min.")
    return 0
