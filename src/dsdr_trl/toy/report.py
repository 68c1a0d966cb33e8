"""The report of `dsdr-trl demo`: per-seed results aggregated over seeds, the markdown report and the plots."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

METHODS = ("grpo", "dsdr")

# What the committed many-seed studies found (docs/effect-study.md), written there by experiments/findings.py; every
# report repeats it, so that a single run is read against the many-seed results.
FINDINGS = Path(__file__).parent / "assets" / "study-results" / "findings.json"
LABELS = {"warmstart": "warm start (SFT)", "grpo": "GRPO", "dsdr": "DSDR"}
SMOOTHING_STEPS = 10


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
    for key in (f"avg@{num_samples}", "distinct_correct", "semantic_distance", "strategies_per_problem"):
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
    scale, digits = (100, 1) if percent else (1, 2)
    if std is None or len(method["per_seed"]) == 1:
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def results_table(report: dict[str, Any]) -> str:
    """The report's main markdown table: one row per method."""
    n = report["settings"]["num_samples"]
    ks = [k for k in ("1", "2", "4", "8", "16") if int(k) <= n]
    header = ["method", *[f"pass@{k} %" for k in ks], f"avg@{n} %", "distinct correct", "strategies", "sem. dist."]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name, method in report["methods"].items():
        cells = [LABELS[name], *[_cell(method, "", k) for k in ks], _cell(method, f"avg@{n}")]
        for key in ("distinct_correct", "strategies_per_problem", "semantic_distance"):
            cells.append(_cell(method, key, percent=False))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_difference(grpo: list[float], dsdr: list[float]) -> tuple[float, float | None]:
    """Mean over seeds of DSDR − GRPO, and its standard error (`None` for one seed).

    Both methods run with the same seeds from the same warm start, so the differences are paired by seed: the
    standard error is `stdev(d) / sqrt(n)` over the per-seed differences `d`.
    """
    differences = [b - a for a, b in zip(grpo, dsdr, strict=True)]
    error = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else None
    return statistics.fmean(differences), error


def _verdict(report: dict[str, Any]) -> str:
    """The comparison in words; with several seeds a gap counts only when it exceeds twice its standard error."""
    n, methods = str(report["settings"]["num_samples"]), report["methods"]
    lines, signs = [], set()
    for name in METHODS:
        start, end = methods["warmstart"], methods[name]
        lines.append(
            f"- {LABELS[name]} from the warm start: pass@1 {100 * start['pass@k']['1']:.1f} → "
            f"{100 * end['pass@k']['1']:.1f} %, pass@{n} {100 * start['pass@k'][n]:.1f} → "
            f"{100 * end['pass@k'][n]:.1f} %, distinct correct {start['distinct_correct']:.2f} → "
            f"{end['distinct_correct']:.2f}."
        )
    for label, key, k in (("pass@1", "", "1"), (f"pass@{n}", "", n), ("distinct correct", "distinct_correct", None)):
        grpo, dsdr = ([run["pass@k"][k] if k else run[key] for run in methods[m]["per_seed"]] for m in METHODS)
        delta, error = paired_difference(grpo, dsdr)
        scale, digits, unit = (100, 1, " points") if k else (1, 2, "")
        line = f"- {label}: DSDR {scale * delta:+.{digits}f}{unit} against GRPO"
        if error is not None:
            exceeds = abs(delta) > 2 * error
            line += f", standard error {scale * error:.{digits}f}: " + ("**exceeds**" if exceeds else "within")
            line += " twice its standard error"
            signs |= {delta > 0} if exceeds else set()
        lines.append(line + ".")
    if len(report["seeds"]) == 1:
        lines.append("\nOne seed cannot separate the methods from run-to-run noise: run `--seeds 0 1 2` or more.")
    elif not signs:
        lines.append(
            "\nNone of these gaps exceeds twice its standard error: this run does **not** separate the methods."
        )
    else:
        leader = {frozenset({True}): "DSDR is", frozenset({False}): "GRPO is"}.get(frozenset(signs), "Each method is")
        lines.append(f"\n{leader} ahead by more than twice the standard error on at least one of these numbers.")
    return "\n".join(lines)


def study_findings() -> str:
    """The committed confirmation results, one line per regime: its DSDR − GRPO numbers and a plain sentence."""
    return "\n".join(
        f"- `{name}` ({len(entry['seeds'])} confirmation seeds): DSDR − GRPO {entry['metric']} "
        f"{entry['difference']['mean']:+.1f} ± {entry['difference']['standard_error']:.1f} points "
        f"(GRPO {entry['grpo']:.1f}, DSDR {entry['dsdr']:.1f}). {entry['sentence']}"
        for name, entry in json.loads(FINDINGS.read_text())["regimes"].items()
    )


def write_report(report: dict[str, Any], output_dir: Path, plots: list[str]) -> None:
    settings = report["settings"]
    strategies = "\n".join(
        f"| {LABELS[name]} | " + " | ".join(f"{100 * share:.0f}" for share in method["strategy_share"].values()) + " |"
        for name, method in report["methods"].items()
    )
    share_header = " | ".join(report["methods"]["grpo"]["strategy_share"])
    names = ", ".join(name for name in report["methods"]["grpo"]["strategy_share"] if name != "other")
    family = settings.get("hard_multipliers") or []
    held_out = (
        f"problems a*b with b in {{{', '.join(map(str, family))}}}, a family SFT saw "
        f"{100 * settings['hard_sft_fraction']:.0f} % of and RL none of"
        if family
        else "held-out problems (disjoint from the SFT and RL problems)"
    )
    if settings.get("task_variant") == "minority-rescue":
        held_out = "problems of the family only round-up solves (its products of two digits from {7, 8, 9} never appear in SFT or RL)"
    text = f"""# DSDR vs GRPO on the toy multiplication task

- Regime `{settings.get("regime", "collapse")}`. Seeds: {", ".join(map(str, report["seeds"]))}. Wall time: \
{report["wall_seconds"] / 60:.1f} min.
- Task: strategies {names}; warm start `{settings["warmstart"]}` ({settings.get("sft_steps", 600)} SFT steps).
- RL: {settings["max_steps"]} steps per method and seed, {settings["prompts_per_step"]} problems × G = \
{settings["num_generations"]} completions per step, learning rate {settings["learning_rate"]}, temperature \
{settings["temperature"]}; clip-higher ε = (0.2, 0.28), no KL, for both methods.
- DSDR: λ_d = {settings["diversity_coef"]}, λ_ℓ = {settings["local_entropy_coef"]}, \
τ = {settings["coupling_temperature"]}, chosen for the toy scale before the comparison (the paper's \
λ_d = λ_ℓ = 0.001 are for real LLMs). GRPO is the same trainer with λ_d = λ_ℓ = 0.
- Evaluation: {settings["num_eval_problems"]} {held_out} × {settings["num_samples"]} samples at temperature \
{settings["eval_temperature"]}.

## Held-out results{" (mean ± std over seeds)" if len(report["seeds"]) > 1 else ""}

{results_table(report)}

*distinct correct*: distinct formula sets among a problem's correct samples; *strategies*: how many of the
strategies ({names}) the correct samples of a problem use; *sem. dist.*: mean pairwise semantic distance
`(1 − cos)/2` among correct samples (all-MiniLM-L6-v2). pass@k is the unbiased estimator, averaged over problems.

{_verdict(report)}

## What many seeds say

{study_findings()}

## Which strategies the correct samples use (% of correct samples)

| method | {share_header} |
|---|{"---:|" * len(report["methods"]["grpo"]["strategy_share"])}
{strategies}

## Plots

{chr(10).join(f"![{name}]({name})" for name in plots)}
"""
    (output_dir / "report.md").write_text(text)


def make_plots(report: dict[str, Any], histories: dict[str, list[list[dict]]], output_dir: Path) -> list[str]:
    """Writes `pass_at_k.png` and `training_curves.png`; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    import numpy as np

    colors = {"warmstart": "tab:gray", "grpo": "tab:blue", "dsdr": "tab:red"}
    fig, ax = plt.subplots(figsize=(6, 4), layout="tight")
    for name, method in report["methods"].items():
        ks = [int(k) for k in method["pass@k"]]
        mean, std = (100 * np.array(list(method[key].values())) for key in ("pass@k", "pass@k_std"))
        ax.plot(ks, mean, marker="o", ms=3, label=LABELS[name], color=colors[name])
        ax.fill_between(ks, mean - std, mean + std, alpha=0.2, color=colors[name])
    ax.set_xscale("log", base=2)
    ax.set(xlabel="k", ylabel="pass@k (%)", title="Held-out pass@k (unbiased estimator)")
    ax.legend()
    fig.savefig(output_dir / "pass_at_k.png", dpi=120)
    plt.close(fig)

    def curves(ax, runs: list[list[dict]], key: str, color: str, label: str | None, style: str = "-") -> None:
        """Every seed's curve faint, under the running mean of their average (a step sees only a few problems)."""
        per_seed = [[entry[key] for entry in history if entry.get(key) is not None] for history in runs]
        per_seed = [values for values in per_seed if values]
        if not per_seed:
            return
        length = min(map(len, per_seed))
        for values in per_seed:
            ax.plot(range(1, len(values) + 1), values, color=color, alpha=0.15, lw=0.8, ls=style)
        mean = np.mean([values[:length] for values in per_seed], axis=0)
        # Trailing mean over the last SMOOTHING_STEPS steps (fewer at the start).
        smooth = [mean[max(0, i + 1 - SMOOTHING_STEPS) : i + 1].mean() for i in range(length)]
        ax.plot(range(1, length + 1), smooth, color=color, lw=1.5, ls=style, label=label)

    strategies = [name for name in report["methods"]["grpo"]["strategy_share"] if name != "other"]
    shade = dict(zip(strategies, ("tab:green", "tab:orange", "tab:purple"), strict=False))
    fig, axes = plt.subplots(2, 4, figsize=(16, 6.8), layout="tight", subplot_kw={"xlabel": "step"})
    both_methods = {
        axes[0][0]: ("reward", "accuracy (train reward)"),
        axes[0][1]: ("entropy", "policy entropy (nats/token)"),
        axes[0][2]: ("toy/modes_per_group", "strategies among correct, per group"),
        axes[1][2]: ("toy/frac_all_correct", "all-correct groups"),
    }
    for ax, (key, title) in both_methods.items():
        for name, runs in histories.items():
            curves(ax, runs, key, colors[name], LABELS[name])
        ax.set_title(title, fontsize=10)
    ax = axes[0][3]
    for name, runs in histories.items():
        curves(ax, runs, "dsdr/frac_zero_std_before", colors[name], f"{LABELS[name]}, before shaping", "--")
        curves(ax, runs, "dsdr/frac_zero_std_after", colors[name], f"{LABELS[name]}, after shaping")
    ax.set_title("dead groups (zero reward spread)", fontsize=10)
    ax.legend(fontsize=7)
    for ax, name in zip(axes[1][:2], METHODS, strict=True):
        for strategy in strategies:
            curves(ax, histories[name], f"toy/share_{strategy}", shade[strategy], strategy)
        ax.set_title(f"{LABELS[name]}: share of correct completions by strategy", fontsize=10)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    axes[1][3].axis("off")
    axes[0][0].legend()
    fig.savefig(output_dir / "training_curves.png", dpi=110)
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
