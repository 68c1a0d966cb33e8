"""The report of `dsdr-trl demo`: per-seed results aggregated over seeds, the markdown report and the plots."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

METHODS = ("grpo", "dsdr")
LABELS = {"warmstart": "warm start (SFT)", "grpo": "GRPO", "dsdr": "DSDR"}


def _scalar_keys(num_samples: int) -> list[str]:
    return [f"avg@{num_samples}", "distinct_correct", "semantic_distance", "strategies_per_problem"]


def aggregate(per_seed: list[dict[str, Any]], num_samples: int) -> dict[str, Any]:
    """Mean (and std over seeds, when there are several) of every number of the per-seed evaluations."""

    def stats(values: list[float | None]) -> tuple[float | None, float | None]:
        values = [v for v in values if v is not None and not math.isnan(v)]
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    out: dict[str, Any] = {"pass@k": {}, "pass@k_std": {}}
    for k in per_seed[0]["pass@k"]:
        out["pass@k"][k], out["pass@k_std"][k] = stats([run["pass@k"][k] for run in per_seed])
    for key in _scalar_keys(num_samples):
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
