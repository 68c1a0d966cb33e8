"""The minority-rescue positive control: manipulation checks on its warm start, the RL runs, and their summary.

    python experiments/minority_rescue.py checks                 # on the warm start only, before any RL
    python experiments/minority_rescue.py run --stage dev --seeds 2100 2101 2102 --jobs 2
    python experiments/minority_rescue.py run --stage confirm --seeds 3000 3001 3002 3003 3004 3005 --jobs 2
    python experiments/minority_rescue.py summarize

The regime is `dsdr-trl demo --regime minority-rescue` (`dsdr_trl.toy.task.minority_rescue_splits`). Every arm starts
from the same warm start with the same seeds, steps, batch and learning rate; each (arm, seed) is one job that trains,
then samples 64 completions per problem of the evaluation family E and 16 per guard problem, and writes
`docs/study/minority-rescue/<stage>/seed-<n>-<arm>.json` (metrics, settings, versions; no samples). A job whose file
exists is not run again.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

from common import correctness, mean_pass_at, sample, strategy_share

from dsdr_trl.toy.demo import DemoArguments, resolve_warmstart, train_method
from dsdr_trl.toy.task import MINORITY_STRATEGY, STRATEGY_SETS

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "study" / "minority-rescue"
REGIME = "minority-rescue"
EVAL_SAMPLES = 64  # per problem of E: pass@1, pass@16 and pass@64
GUARD_SAMPLES = 16
KS = (1, 2, 4, 8, 16, 32, 64)
# The arms: DSDR with the demo's toy coefficients, with the paper's, and GRPO (both coefficients 0).
ARMS: dict[str, dict] = {
    "grpo": {},
    "dsdr": {"diversity_coef": 0.1, "local_entropy_coef": 0.01, "coupling_temperature": 5.0},
    "dsdr_paper": {"diversity_coef": 0.001, "local_entropy_coef": 0.001, "coupling_temperature": 5.0},
    "dsdr_correct_only": {"diversity_coef": 0.1, "local_entropy_coef": 0.01, "coupling_temperature": 5.0},
}
# Trainer options an arm sets beyond the demo's settings (passed to `DSDRConfig`).
ARM_OPTIONS: dict[str, dict] = {"dsdr_correct_only": {"diversity_reference": "correct"}}


def settings_for(arm: str | None = None, **overrides) -> DemoArguments:
    return DemoArguments.from_regime(REGIME, **(ARMS.get(arm, {}) | overrides))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def versions() -> dict[str, str]:
    import torch
    import transformers
    import trl

    import dsdr_trl

    git = ["git", "rev-parse", "HEAD"]
    commit = subprocess.run(git, cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()  # noqa: S603, S607
    return {
        "dsdr_trl": dsdr_trl.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "python": sys.version.split()[0],
        "commit": commit,
    }


def evaluate_family(model, tokenizer, settings: DemoArguments, seed: int) -> dict:
    """pass@k and the minority strategy's share on E (64 samples per problem), pass@k on the guard set (16)."""
    splits = settings.splits()
    samples = sample(
        model, tokenizer, splits.held_out, EVAL_SAMPLES, seed, max_new_tokens=settings.max_completion_length
    )
    flags = correctness(samples, splits.held_out)
    guard = sample(model, tokenizer, splits.guard, GUARD_SAMPLES, seed, max_new_tokens=settings.max_completion_length)
    guard_flags = correctness(guard, splits.guard)
    return {
        "family": {
            "problems": len(splits.held_out),
            "samples_per_problem": EVAL_SAMPLES,
            "pass@k": {str(k): mean_pass_at(k, flags) for k in KS},
            "strategy_share": strategy_share(samples),
            "strategy_share_correct": strategy_share(samples, flags),
        },
        "guard": {
            "problems": len(splits.guard),
            "samples_per_problem": GUARD_SAMPLES,
            "pass@k": {str(k): mean_pass_at(k, guard_flags) for k in (1, 16)},
        },
    }


def checks(args) -> int:
    """The manipulation checks, on the warm start only."""
    import torch

    from dsdr_trl.toy.warmstart import load_policy

    torch.set_num_threads(1)
    start = time.time()
    settings = settings_for(sft_steps=args.sft_steps)
    warmstart = Path(args.warmstart) if args.warmstart else resolve_warmstart(settings)
    model, tokenizer = load_policy(warmstart)
    splits = settings.splits()
    length = settings.max_completion_length
    rl = sample(model, tokenizer, splits.rl, settings.num_generations, args.seed, max_new_tokens=length)
    rl_flags = correctness(rl, splits.rl)
    forced = {}
    for strategy in STRATEGY_SETS["balanced"]:
        got = sample(model, tokenizer, splits.held_out, EVAL_SAMPLES, args.seed, strategy, max_new_tokens=length)
        forced[strategy] = statistics.fmean(map(statistics.fmean, correctness(got, splits.held_out)))
    result = evaluate_family(model, tokenizer, settings, args.seed)
    majority = [s for s in STRATEGY_SETS["balanced"] if s != MINORITY_STRATEGY]
    record = {
        "warmstart": str(warmstart.relative_to(ROOT) if warmstart.is_relative_to(ROOT) else warmstart),
        "warmstart_sha256": sha256(warmstart / "model.safetensors"),
        "sft_steps": settings.sft_steps,
        "seed": args.seed,
        "rl_groups_all_correct": statistics.fmean(all(group) for group in rl_flags),
        "rl_accuracy": statistics.fmean(map(statistics.fmean, rl_flags)),
        "rl_strategy_share": strategy_share(rl),
        "family_forced_accuracy": forced,
        **result,
        "checks": {
            "rl_groups_all_correct >= 0.5": statistics.fmean(all(group) for group in rl_flags) >= 0.5,
            "forced minority on E >= 0.25": forced[MINORITY_STRATEGY] >= 0.25,
            "forced majority on E <= 0.02": all(forced[s] <= 0.02 for s in majority),
            "free pass@16 on E <= 0.5": result["family"]["pass@k"]["16"] <= 0.5,
        },
        "versions": versions(),
        "wall_seconds": time.time() - start,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("rl_groups_all_correct", "family_forced_accuracy", "checks")}, indent=1))
    print(f"E: {record['family']['pass@k']}, shares {record['family']['strategy_share']}; guard {record['guard']}")
    return 0 if all(record["checks"].values()) else 1


@functools.cache
def _encoder():
    from dsdr_trl.encoder import load_diversity_encoder

    return load_diversity_encoder()


def run_job(arm: str, seed: int, out_path: str, sft_steps: int, max_steps: int | None) -> str:
    """Trains one arm with one seed from the warm start, evaluates it and writes its record to `out_path`."""
    import torch

    from dsdr_trl.toy.task import rl_dataset

    torch.set_num_threads(1)
    start = time.time()
    settings = settings_for(arm, sft_steps=sft_steps, **({"max_steps": max_steps} if max_steps else {}))
    warmstart = resolve_warmstart(settings, quiet=True)
    run_dir = ROOT / "outputs" / "minority-rescue" / Path(out_path).parent.name / Path(out_path).stem  # scratch
    method = "grpo" if arm == "grpo" else "dsdr"
    extra = {"dsdr_options": ARM_OPTIONS[arm]} if ARM_OPTIONS.get(arm) else {}
    model, tokenizer, history = train_method(
        method, seed, settings, warmstart, _encoder(), rl_dataset(settings.splits().rl), run_dir, **extra
    )
    trained = time.time() - start
    result = evaluate_family(model, tokenizer, settings, seed)

    def mean(key: str, entries: list[dict]) -> float:
        return statistics.fmean(entry.get(key, 0.0) for entry in entries)

    first, last = history[:10], history[-10:]
    record = {
        "regime": REGIME,
        "arm": arm,
        "seed": seed,
        "settings": {k: v for k, v in asdict(settings).items() if k not in ("seeds", "output_dir")},
        "trainer_options": ARM_OPTIONS.get(arm, {}),
        "warmstart_sha256": sha256(warmstart / "model.safetensors"),
        **result,
        "training": {
            "steps": len(history),
            f"minority_share_first_{len(first)}_steps": mean(f"toy/share_{MINORITY_STRATEGY}", first),
            f"minority_share_last_{len(last)}_steps": mean(f"toy/share_{MINORITY_STRATEGY}", last),
            "frac_all_correct_first": mean("toy/frac_all_correct", first),
            "frac_all_correct_last": mean("toy/frac_all_correct", last),
            "reward_first": mean("reward", first),
            "reward_last": mean("reward", last),
            "dead_groups_before_shaping": statistics.fmean(e["dsdr/frac_zero_std_before"] for e in history),
            "dead_groups_after_shaping": statistics.fmean(e["dsdr/frac_zero_std_after"] for e in history),
        },
        "versions": versions(),
        "train_seconds": trained,
        "wall_seconds": time.time() - start,
    }
    Path(out_path).write_text(json.dumps(record, indent=1) + "\n")
    return out_path


def _warm(sft_steps: int) -> str:
    import torch

    torch.set_num_threads(1)
    return str(resolve_warmstart(settings_for(sft_steps=sft_steps), quiet=True))


def run(args) -> int:
    out = OUT / args.stage
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(arm, seed, str(out / f"seed-{seed}-{arm}.json")) for seed in args.seeds for arm in args.arms]
    pending = [job for job in jobs if not Path(job[-1]).exists()]
    print(f"[minority-rescue] {len(jobs)} jobs, {len(pending)} to run, {args.jobs} at a time", flush=True)
    _warm(args.sft_steps)
    start = time.time()
    if args.jobs == 1:
        for job in pending:
            run_job(*job, args.sft_steps, args.max_steps)
            print(f"[minority-rescue] done {Path(job[-1]).stem} at {time.time() - start:.0f} s", flush=True)
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_job, *job, args.sft_steps, args.max_steps) for job in pending]
            for future in futures:
                print(
                    f"[minority-rescue] done {Path(future.result()).stem} at {time.time() - start:.0f} s", flush=True
                )
    print(f"[minority-rescue] {len(pending)} jobs in {(time.time() - start) / 60:.1f} min", flush=True)
    return 0


def paired(base: list[float], other: list[float]) -> dict:
    """Mean of the seed-paired differences `other − base` and its standard error (`None` for one seed)."""
    diffs = [b - a for a, b in zip(base, other, strict=True)]
    error = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None
    mean = statistics.fmean(diffs)
    return {"mean": mean, "standard_error": error, "exceeds_2se": None if error is None else abs(mean) > 2 * error}


METRICS = {
    "E pass@1": lambda r: 100 * r["family"]["pass@k"]["1"],
    "E pass@16": lambda r: 100 * r["family"]["pass@k"]["16"],
    "E pass@64": lambda r: 100 * r["family"]["pass@k"]["64"],
    "E minority share": lambda r: 100 * r["family"]["strategy_share"].get(MINORITY_STRATEGY, 0.0),
    "RL minority share of correct, last 10 steps": lambda r: 100 * r["training"]["minority_share_last_10_steps"],
    "guard pass@1": lambda r: 100 * r["guard"]["pass@k"]["1"],
    "guard pass@16": lambda r: 100 * r["guard"]["pass@k"]["16"],
}
PRIMARY = ("dsdr", "E pass@16", 5.0)  # DSDR (toy coefficients) − GRPO, pass@16 on E: ≥ +5 points and > 2 SE


def summarize_stage(stage: str) -> dict:
    records = [json.loads(path.read_text()) for path in sorted((OUT / stage).glob("seed-*.json"))]
    arms: dict[str, dict[int, dict]] = {}
    for record in records:
        arms.setdefault(record["arm"], {})[record["seed"]] = record
    summary: dict = {"stage": stage, "arms": {}, "differences": {}}
    for arm, runs in arms.items():
        summary["arms"][arm] = {"seeds": sorted(runs)} | {
            name: {"mean": statistics.fmean(f(r) for r in runs.values())}
            | ({"sd": statistics.stdev(f(r) for r in runs.values())} if len(runs) > 1 else {})
            for name, f in METRICS.items()
        }
    for arm, runs in arms.items():
        if arm == "grpo" or "grpo" not in arms:
            continue
        seeds = sorted(set(runs) & set(arms["grpo"]))
        if not seeds:
            continue
        summary["differences"][arm] = {"seeds": seeds} | {
            name: paired([f(arms["grpo"][s]) for s in seeds], [f(runs[s]) for s in seeds])
            for name, f in METRICS.items()
        }
    arm, metric, bar = PRIMARY
    if arm in summary["differences"]:
        d = summary["differences"][arm][metric]
        summary["primary_endpoint"] = {
            "comparison": f"{arm} − grpo, {metric} (points)",
            "bar": f"≥ +{bar} points and > 2 standard errors of the seed-paired differences",
            "mean": d["mean"],
            "standard_error": d["standard_error"],
            "met": d["standard_error"] is not None and d["mean"] >= bar and d["mean"] > 2 * d["standard_error"],
        }
    return summary


def table(summary: dict) -> str:
    lines = [
        f"### {summary['stage']}",
        "",
        "| arm | seeds | " + " | ".join(METRICS) + " |",
        "|---|---|" + "---:|" * len(METRICS),
    ]
    for arm, entry in summary["arms"].items():
        cells = [
            f"{entry[n]['mean']:.1f}"
            + (f" ± {entry[n]['sd'] / math.sqrt(len(entry['seeds'])):.1f}" if "sd" in entry[n] else "")
            for n in METRICS
        ]
        lines.append(f"| {arm} | {len(entry['seeds'])} | " + " | ".join(cells) + " |")
    for arm, entry in summary["differences"].items():
        cells = []
        for n in METRICS:
            d = entry[n]
            text = f"{d['mean']:+.1f}" + (f" ± {d['standard_error']:.1f}" if d["standard_error"] is not None else "")
            cells.append(f"**{text}**" if d["exceeds_2se"] else text)
        lines.append(f"| {arm} − grpo | {len(entry['seeds'])} | " + " | ".join(cells) + " |")
    if "primary_endpoint" in summary:
        p = summary["primary_endpoint"]
        se = "–" if p["standard_error"] is None else f"{p['standard_error']:.1f}"
        lines += [
            "",
            f"Primary endpoint ({p['comparison']}; bar {p['bar']}): {p['mean']:+.1f} ± {se}: "
            + ("**met**." if p["met"] else "**not met**."),
        ]
    return "\n".join(lines) + "\n"


def summarize(args) -> int:
    summaries = {stage: summarize_stage(stage) for stage in ("dev", "confirm") if (OUT / stage).is_dir()}
    (OUT / "summary.json").write_text(json.dumps(summaries, indent=1) + "\n")
    text = "# minority-rescue: per-arm means ± standard error over seeds; differences seed-paired (points)\n\n"
    if (OUT / "checks.json").exists():
        c = json.loads((OUT / "checks.json").read_text())
        f, g = c["family"], c["guard"]
        text += (
            f"Warm start (checks.json, seed {c['seed']}): E pass@1 {100 * f['pass@k']['1']:.1f}, pass@16 "
            f"{100 * f['pass@k']['16']:.1f}, pass@64 {100 * f['pass@k']['64']:.1f}, minority share on E "
            f"{100 * f['strategy_share'].get(MINORITY_STRATEGY, 0.0):.1f}, on the RL problems "
            f"{100 * c['rl_strategy_share'].get(MINORITY_STRATEGY, 0.0):.1f} of all samples; guard pass@1 {100 * g['pass@k']['1']:.1f}, "
            f"pass@16 {100 * g['pass@k']['16']:.1f}.\n\n"
        )
    text += "\n".join(table(s) for s in summaries.values())
    (OUT / "summary.md").write_text(text)
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("checks", help="Manipulation checks on the warm start (no RL).")
    check.add_argument("--warmstart", default=None, help="Warm-start directory (default: the regime's).")
    check.add_argument("--sft_steps", type=int, default=DemoArguments.sft_steps)
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--out", default=str(OUT / "checks.json"))
    go = sub.add_parser("run", help="Train and evaluate every (arm, seed) not yet done.")
    go.add_argument("--stage", choices=("dev", "confirm"), required=True)
    go.add_argument("--seeds", type=int, nargs="+", required=True)
    go.add_argument("--arms", nargs="+", default=["grpo", "dsdr", "dsdr_paper"], choices=list(ARMS))
    go.add_argument("--jobs", type=int, default=2, help="Jobs at a time, each in its own one-thread process.")
    go.add_argument("--sft_steps", type=int, default=DemoArguments.sft_steps)
    go.add_argument("--max_steps", type=int, default=None, help="RL steps (default: the regime's).")
    sub.add_parser("summarize", help="Write summary.json and summary.md from the per-seed files.")
    args = parser.parse_args(argv)
    return {"checks": checks, "run": run, "summarize": summarize}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
