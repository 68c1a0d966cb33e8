"""Strategy headroom: how much could keeping every strategy alive add to pass@16 on a regime's evaluation set?

    python experiments/headroom.py --regimes hard-family collapse minority-rescue --jobs 2

For each regime, from its warm start and after one GRPO run (the regime's settings, `--seed`): every strategy is
forced by its first formula's left-hand side (`47*6=` + `$40*6=`) and sampled `--samples` times per evaluation problem
at temperature 1, which gives each problem's accuracy a_k(x) under strategy k; the free policy is sampled as well.
Reported per policy: pass@1 and pass@16 of each forced strategy and of the free policy (unbiased estimator), and from
the per-problem accuracies (mean over x of 1 − (1 − a(x))^16): the best single strategy, the uniform mixture
(a = mean_k a_k), the best strategy chosen per problem (a = max_k a_k); and how many problems no strategy, exactly one
or several solve (at least one correct sample). The uniform mixture minus the best single strategy is the most that
keeping all strategies alive can add. Results merge into `docs/study/headroom.json`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from common import correctness, mean_pass_at, sample, strategy_share

from dsdr_trl.toy.demo import DemoArguments, resolve_warmstart, train_method

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "study" / "headroom.json"


def at16(accuracies: list[float]) -> float:
    return statistics.fmean(1 - (1 - a) ** 16 for a in accuracies)


def measure(model, tokenizer, settings: DemoArguments, samples: int, seed: int) -> dict:
    """Forced and free sampling of one policy on the regime's evaluation set."""
    problems = settings.splits().held_out[: settings.num_eval_problems]
    length = settings.max_completion_length
    per_strategy: dict[str, list[float]] = {}
    out: dict = {"forced": {}}
    for strategy in settings.strategy_names:
        flags = correctness(
            sample(model, tokenizer, problems, samples, seed, strategy, max_new_tokens=length), problems
        )
        per_strategy[strategy] = [statistics.fmean(group) for group in flags]
        out["forced"][strategy] = {
            "pass@1": mean_pass_at(1, flags),
            "pass@16": mean_pass_at(16, flags),
            "pass@16_from_accuracy": at16(per_strategy[strategy]),
        }
    free = sample(model, tokenizer, problems, samples, seed, max_new_tokens=length)
    flags = correctness(free, problems)
    out["free"] = {
        "pass@1": mean_pass_at(1, flags),
        "pass@16": mean_pass_at(16, flags),
        "pass@16_from_accuracy": at16([statistics.fmean(group) for group in flags]),
        "strategy_share_correct": strategy_share(free, flags),
    }
    columns = list(zip(*per_strategy.values(), strict=True))  # per problem: each strategy's accuracy
    best_single = max(per_strategy, key=lambda k: at16(per_strategy[k]))
    solvers = [sum(a > 0 for a in column) for column in columns]
    out["best_single_strategy"] = {"strategy": best_single, "pass@16": at16(per_strategy[best_single])}
    out["uniform_mixture"] = {"pass@16": at16([statistics.fmean(column) for column in columns])}
    out["best_strategy_per_problem"] = {"pass@16": at16([max(column) for column in columns])}
    out["headroom_pass@16"] = out["uniform_mixture"]["pass@16"] - out["best_single_strategy"]["pass@16"]
    out["problems"] = {
        "total": len(problems),
        "solved_by_no_strategy": solvers.count(0),
        "solved_by_exactly_one": solvers.count(1),
        "solved_by_several": sum(n > 1 for n in solvers),
    }
    return out


def run_regime(regime: str, samples: int, seed: int, rl: bool, known: dict | None = None) -> tuple[str, dict]:
    """Measures the regime's warm start (unless `known` holds it, with the same samples and seed) and, with `rl`, the
    policy after one GRPO run."""
    import torch

    from dsdr_trl.encoder import load_diversity_encoder
    from dsdr_trl.toy.task import rl_dataset
    from dsdr_trl.toy.warmstart import load_policy

    torch.set_num_threads(1)
    start = time.time()
    settings = DemoArguments.from_regime(regime)
    warmstart = resolve_warmstart(settings, quiet=True)
    model, tokenizer = load_policy(warmstart)
    entry = {
        "evaluation_set": f"the regime's {len(settings.splits().held_out[: settings.num_eval_problems])} held-out "
        "problems (its demo evaluation set)",
        "samples_per_problem_and_strategy": samples,
        "seed": seed,
    }
    same = known and (known.get("samples_per_problem_and_strategy"), known.get("seed")) == (samples, seed)
    entry["warmstart"] = known["warmstart"] if same else measure(model, tokenizer, settings, samples, seed)
    if rl:
        run_dir = ROOT / "outputs" / "headroom" / f"{regime}-grpo-seed{seed}"
        model, tokenizer, _ = train_method(
            "grpo", seed, settings, warmstart, load_diversity_encoder(), rl_dataset(settings.splits().rl), run_dir
        )
        entry["after_grpo"] = measure(model, tokenizer, settings, samples, seed)
    entry["wall_seconds"] = time.time() - start
    return regime, entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regimes", nargs="+", default=["hard-family", "collapse", "minority-rescue"])
    parser.add_argument("--samples", type=int, default=16, help="Samples per problem and strategy (at least 16).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the GRPO run and of the sampling.")
    parser.add_argument("--no_rl", action="store_true", help="Measure the warm starts only.")
    parser.add_argument("--jobs", type=int, default=2, help="Regimes at a time, each in its own one-thread process.")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    if args.samples < 16:
        parser.error("--samples must be at least 16 (pass@16).")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(run_regime, r, args.samples, args.seed, not args.no_rl, results.get(r)) for r in args.regimes
        ]
        for future in futures:
            regime, entry = future.result()
            results[regime] = entry
            out.write_text(json.dumps(results, indent=1) + "\n")
            for policy in ("warmstart", "after_grpo"):
                if policy in entry:
                    e = entry[policy]
                    print(
                        f"{regime} {policy}: best single {e['best_single_strategy']} uniform "
                        f"{e['uniform_mixture']['pass@16']:.3f} per-problem {e['best_strategy_per_problem']['pass@16']:.3f}"
                        f" free {e['free']['pass@16']:.3f}; {e['problems']}",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
