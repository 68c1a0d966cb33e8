"""The regime study: where on the toy task does DSDR's mechanism move pass@k?

    python experiments/study.py --seeds 100 101 102         # the full grid on the development seeds, two jobs at a time
    python experiments/study.py --study_grid tiny            # every stage at a tiny size, in seconds (the test suite's)
    python experiments/study.py --seeds 1000 1001 --study_grid confirm --regime hard-family --study_dir outputs/confirm

A grid is a list of cells. A cell is a set of [`~dsdr_trl.toy.demo.DemoArguments`] overrides on top of the demo's
settings (task variant, warm start, RL length, evaluation family) and the methods trained there: GRPO and DSDR, and
at the base cell DSDR's parts one at a time ([`DSDR_VARIANTS`]). Every method of a cell runs with the same seeds,
steps, batch and learning rate from the same warm start. Each (cell, method, seed) is one job: train, then sample 16
completions per held-out problem. Jobs run in `--jobs` processes of one thread each and write one JSON file
each under `study_dir/jobs`, so an interrupted study resumes where it stopped.

`study.json` then gives, per cell, each method's means and, for every DSDR variant, DSDR − GRPO on pass@1, pass@16
and distinct correct solutions per problem with the standard error of the seed-paired differences, next to the
fraction of all-correct groups at the start of RL (GRPO's first steps); `study.png` plots the differences against
that fraction.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from dsdr_trl.toy.demo import (
    DEFAULT_REGIME,
    REGIMES,
    DemoArguments,
    evaluate,
    regime_settings,
    resolve_warmstart,
    train_method,
)
from dsdr_trl.toy.report import paired_difference

# DSDR's parts (the paper's ablations): each is DSDR with one term changed; "grpo" has both coefficients at 0.
DSDR_VARIANTS: dict[str, dict[str, float]] = {
    "dsdr": {},
    "dsdr_bonus_only": {"local_entropy_coef": 0.0},
    "dsdr_local_only": {"diversity_coef": 0.0},
    "dsdr_tau0": {"coupling_temperature": 0.0},
}
ALL_PARTS = tuple(DSDR_VARIANTS)

# The full grid: the `hard-family` regime with every DSDR part, and one axis changed at a time with full DSDR:
# warm-start strength (SFT steps, or SFT that includes the RL problems), strategy balance, evaluation difficulty and
# training length. Each cell is `hard-family` with these changes.
CELLS: dict[str, dict[str, Any]] = {
    "hard-family": {},
    "hard-family-sft600": {"sft_steps": 600},
    "hard-family-sft1500": {"sft_steps": 1500},
    "hard-family-memorised": {"sft_steps": 1500, "sft_includes_rl": True},
    "hard-family-original": {"strategies": "original"},
    "standard-eval": {"hard_multipliers": []},
    "hard-family-300-steps": {"max_steps": 300},
}
GRIDS: dict[str, list[tuple[str, dict[str, Any], tuple[str, ...]]]] = {
    "full": [("hard-family", {}, ALL_PARTS), *[(name, {}, ("dsdr",)) for name in list(CELLS)[1:]]],
    # Every code path at a tiny size: two cells (one with every DSDR part), 2 RL steps, 4 problems × 4 samples.
    "tiny": [
        (
            "base",
            {"strategies": "original", "hard_multipliers": [], "sft_steps": 600}
            | {"max_steps": 2, "prompts_per_step": 2, "num_eval_problems": 4, "num_samples": 4},
            ALL_PARTS,
        ),
        (
            "balanced",
            {"strategies": "balanced", "hard_multipliers": [], "sft_steps": 2, "max_steps": 2, "prompts_per_step": 2}
            | {"num_eval_problems": 4, "num_samples": 4},
            ("dsdr",),
        ),
    ],
}


@dataclass
class StudyArguments:
    """What the study runs; the demo's own flags (`DemoArguments`) set everything a cell does not override."""

    study_grid: str = field(
        default="full", metadata={"help": "Which grid of cells to run.", "choices": list(GRIDS) + ["confirm"]}
    )
    study_dir: str = field(default="outputs/study", metadata={"help": "Where the jobs, study.json and plots go."})
    jobs: int = field(
        default=2, metadata={"help": "Jobs run at a time, each in its own process with one thread (1: in process)."}
    )
    per_seed_dir: str | None = field(
        default=None,
        metadata={"help": "Also write each finished job as DIR/seed-<n>-<method>.json (small: metrics, settings)."},
    )
    study_summarize_only: bool = field(
        default=False,
        metadata={"help": "Run nothing: summarize the jobs already done (e.g. of an interrupted study)."},
    )

    def __post_init__(self):
        if self.study_grid not in (*GRIDS, "confirm"):
            raise ValueError(f"--study_grid must be one of {[*GRIDS, 'confirm']}, got '{self.study_grid}'.")
        if self.jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {self.jobs}.")


def grid_cells(study: StudyArguments, demo: DemoArguments) -> list[tuple[str, DemoArguments, tuple[str, ...]]]:
    """The cells of the study: their names, full settings and DSDR variants. `confirm` is the demo's own settings
    (its regime and flags) with GRPO, full DSDR and its bonus alone."""
    if study.study_grid == "confirm":
        return [(demo.regime, demo, ("dsdr", "dsdr_bonus_only"))]
    return [
        (
            name,
            replace(demo, **(regime_settings("hard-family") | CELLS[name] if name in CELLS else {}) | overrides),
            parts,
        )
        for name, overrides, parts in GRIDS[study.study_grid]
    ]


def _job_name(cell: str, method: str, seed: int) -> str:
    return f"{cell}--{method}--seed{seed}"


@functools.cache
def _encoder():
    """The sentence encoder, loaded once per worker process."""
    from dsdr_trl.encoder import load_diversity_encoder

    return load_diversity_encoder()


def run_job(cell: str, method: str, seed: int, settings: DemoArguments, out_path: str) -> str:
    """Trains `method` on `cell`'s settings with `seed`, evaluates it and writes the result to `out_path`."""
    import torch

    from dsdr_trl.toy.task import rl_dataset

    torch.set_num_threads(1)
    start = time.time()
    variant = replace(settings, **DSDR_VARIANTS.get(method, {}))
    warmstart = resolve_warmstart(variant, quiet=True)
    splits = variant.splits()
    encoder = _encoder()
    run_dir = Path(out_path).parent / "runs" / Path(out_path).stem
    model, tokenizer, history = train_method(
        "grpo" if method == "grpo" else "dsdr", seed, variant, warmstart, encoder, rl_dataset(splits.rl), run_dir
    )
    result = evaluate(model, tokenizer, splits.held_out[: variant.num_eval_problems], variant, seed, encoder)
    first = history[: min(5, len(history))]
    record = {
        "cell": cell,
        "method": method,
        "seed": seed,
        "settings": asdict(variant),
        "frac_all_correct_start": statistics.fmean(entry.get("toy/frac_all_correct", 0.0) for entry in first),
        "train_accuracy_start": statistics.fmean(entry["reward"] for entry in first),
        "dead_groups_before": statistics.fmean(entry["dsdr/frac_zero_std_before"] for entry in history),
        "dead_groups_after": statistics.fmean(entry["dsdr/frac_zero_std_after"] for entry in history),
        "eval": {key: value for key, value in result.items() if key != "examples"},
        "wall_seconds": time.time() - start,
    }
    Path(out_path).write_text(json.dumps(record, indent=1))
    return out_path


def _warm(settings: DemoArguments) -> str:
    import torch

    torch.set_num_threads(1)
    return str(resolve_warmstart(settings, quiet=True))


def run_study(study: StudyArguments, demo: DemoArguments) -> dict[str, Any]:
    """Runs every job not yet done (warm starts first), then writes `study.json` and the plots; returns the summary."""
    start = time.time()
    out = Path(study.study_dir)
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    cells = grid_cells(study, demo)
    # Seed by seed, so that a study stopped early has every cell on its first seeds.
    jobs = [
        (cell, method, seed, settings, str(out / "jobs" / f"{_job_name(cell, method, seed)}.json"))
        for seed in demo.seeds
        for cell, settings, parts in cells
        for method in ("grpo", *parts)
    ]
    pending = [job for job in jobs if not Path(job[-1]).exists()]
    warm = {settings.warmstart_name: settings for _, settings, _ in cells}
    print(f"[study] {len(cells)} cells, {len(jobs)} jobs ({len(pending)} to run), {len(warm)} warm starts")
    if study.study_summarize_only:
        pass
    elif study.jobs == 1:
        for settings in warm.values():
            _warm(settings)
        for job in pending:
            run_job(*job)
    else:
        with ProcessPoolExecutor(study.jobs, mp_context=get_context("spawn")) as pool:
            for path in pool.map(_warm, warm.values()):
                print(f"[study] warm start ready: {path}")
            futures = [pool.submit(run_job, *job) for job in pending]
            for done, future in enumerate(futures, 1):
                print(f"[study] {done}/{len(futures)} done: {Path(future.result()).stem}", flush=True)
    done = [json.loads(Path(job[-1]).read_text()) for job in jobs if Path(job[-1]).exists()]
    if study.per_seed_dir:
        Path(study.per_seed_dir).mkdir(parents=True, exist_ok=True)
        for record in done:
            path = Path(study.per_seed_dir) / f"seed-{record['seed']}-{record['method']}.json"
            path.write_text(json.dumps(record, indent=1) + "\n")
    summary = summarize_study(done, study, demo)
    summary["wall_seconds"] = time.time() - start
    (out / "study.json").write_text(json.dumps(summary, indent=1))
    if demo.plots:
        plot_study(summary, out)
    (out / "study.md").write_text(study_table(summary))
    return summary


METRICS = (("pass@1", 100.0), ("pass@16", 100.0), ("distinct_correct", 1.0))


def _metric(record: dict[str, Any], name: str) -> float:
    if name.startswith("pass@"):
        k = name.split("@")[1]
        return record["eval"]["pass@k"][k if k in record["eval"]["pass@k"] else max(record["eval"]["pass@k"], key=int)]
    return record["eval"][name]


def summarize_study(records: list[dict[str, Any]], study: StudyArguments, demo: DemoArguments) -> dict[str, Any]:
    """Per cell: each method's mean numbers, and each DSDR variant minus GRPO with paired standard errors."""
    cells: dict[str, Any] = {}
    for record in records:
        cell = cells.setdefault(record["cell"], {"settings": record["settings"], "methods": {}})
        cell["methods"].setdefault(record["method"], []).append(record)
    summary: dict[str, Any] = {"grid": study.study_grid, "seeds": demo.seeds, "jobs_done": len(records), "cells": {}}
    for name, cell in cells.items():
        if "grpo" not in cell["methods"]:
            continue
        grpo = sorted(cell["methods"]["grpo"], key=lambda r: r["seed"])
        entry: dict[str, Any] = {
            "settings": {k: v for k, v in grpo[0]["settings"].items() if k not in ("seeds", "output_dir")},
            "frac_all_correct_start": statistics.fmean(r["frac_all_correct_start"] for r in grpo),
            "train_accuracy_start": statistics.fmean(r["train_accuracy_start"] for r in grpo),
            "methods": {},
            "differences": {},
        }
        for method, runs in cell["methods"].items():
            runs = sorted(runs, key=lambda r: r["seed"])
            entry["methods"][method] = {
                metric: statistics.fmean(_metric(r, metric) for r in runs) for metric, _ in METRICS
            } | {
                "dead_groups_before": statistics.fmean(r["dead_groups_before"] for r in runs),
                "dead_groups_after": statistics.fmean(r["dead_groups_after"] for r in runs),
                "strategy_share": {
                    key: statistics.fmean(r["eval"]["strategy_share"][key] for r in runs)
                    for key in runs[0]["eval"]["strategy_share"]
                },
                "seeds": [r["seed"] for r in runs],
            }
            if method == "grpo":
                continue
            # Only seeds that both methods finished are paired (all of them, once the study is complete).
            seeds = sorted({r["seed"] for r in runs} & {r["seed"] for r in grpo})
            if not seeds:
                continue
            base = [r for r in grpo if r["seed"] in seeds]
            runs = [r for r in runs if r["seed"] in seeds]
            entry["differences"][method] = {"seeds": seeds}
            for metric, scale in METRICS:
                mean, error = paired_difference([_metric(r, metric) for r in base], [_metric(r, metric) for r in runs])
                entry["differences"][method][metric] = {
                    "mean": scale * mean,
                    "standard_error": None if error is None else scale * error,
                    "exceeds_2se": None if error is None else abs(mean) > 2 * error,
                }
        summary["cells"][name] = entry
    return summary


def study_table(summary: dict[str, Any]) -> str:
    """The study as a markdown table: one row per cell and DSDR variant."""
    lines = [
        f"Seeds {', '.join(map(str, summary['seeds']))}; DSDR − GRPO, mean ± standard error of the seed-paired "
        "differences; **bold** where the difference exceeds twice its standard error.",
        "",
        "| cell | method | all-correct groups at start | GRPO pass@1 | GRPO pass@16 | seeds | Δ pass@1 | Δ pass@16 | "
        "Δ distinct correct |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, cell in summary["cells"].items():
        grpo = cell["methods"]["grpo"]
        for method, differences in cell["differences"].items():
            cells = [str(len(differences["seeds"]))]
            for metric, scale in METRICS:
                d = differences[metric]
                digits = 1 if scale == 100 else 2
                text = f"{d['mean']:+.{digits}f}"
                if d["standard_error"] is not None:
                    text += f" ± {d['standard_error']:.{digits}f}"
                cells.append(f"**{text}**" if d["exceeds_2se"] else text)
            lines.append(
                f"| {name} | {method} | {100 * cell['frac_all_correct_start']:.0f} % | {100 * grpo['pass@1']:.1f} | "
                f"{100 * grpo['pass@16']:.1f} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def plot_study(summary: dict[str, Any], out: Path) -> None:
    """`study.png`: each DSDR variant's difference from GRPO against the all-correct fraction at the start of RL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = dict(zip(DSDR_VARIANTS, "osD^", strict=True))
    colors = dict(zip(DSDR_VARIANTS, ("tab:red", "tab:orange", "tab:green", "tab:purple"), strict=True))
    # Variants of one cell share its x; a small offset keeps their error bars apart.
    offsets = dict(zip(DSDR_VARIANTS, (0.0, 0.6, 1.2, 1.8), strict=True))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4))
    for ax, (metric, _) in zip(axes, METRICS, strict=True):
        for name, cell in summary["cells"].items():
            x = 100 * cell["frac_all_correct_start"]
            for method, differences in cell["differences"].items():
                d = differences[metric]
                error = 2 * d["standard_error"] if d["standard_error"] is not None else None
                ax.errorbar(
                    x + offsets[method], d["mean"], yerr=error, fmt=markers[method], color=colors[method], capsize=3
                )
                if method == "dsdr":
                    ax.annotate(name, (x, d["mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xlabel("all-correct groups at the start of RL (%)")
        ax.set_title(f"DSDR − GRPO, {metric} (± 2 SE)", fontsize=10)
    handles = [plt.Line2D([], [], marker=m, ls="", color=colors[v], label=v) for v, m in markers.items()]
    axes[0].legend(handles=handles, fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "study.png", dpi=110)
    plt.close(fig)


def regime_defaults(argv: list[str]) -> dict[str, Any]:
    """The settings of the `--regime` named in `argv` (else of the default regime), to apply before the flags."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--regime", default=DEFAULT_REGIME)
    name = parser.parse_known_args(argv)[0].regime
    return regime_settings(name if name in REGIMES else DEFAULT_REGIME)


def main(argv: list[str] | None = None) -> int:
    """Parses the demo's and the study's flags (a `--regime` sets defaults first), runs the study, prints where."""
    from trl import TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = TrlParser((DemoArguments, StudyArguments), prog="experiments/study.py")
    parser.set_defaults(**regime_defaults(argv))
    demo, study = parser.parse_args_and_config(argv)
    summary = run_study(study, demo)
    print(f"\nWrote {study.study_dir}/study.json, study.md and study.png in {summary['wall_seconds'] / 60:.1f} min.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
