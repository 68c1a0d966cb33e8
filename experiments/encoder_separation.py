"""Does DSDR's diversity score see strategies, or errors?

    python experiments/encoder_separation.py --regimes hard-family collapse

On real samples of a regime's warm start (its RL problems, `--groups` groups of G = 8 per problem at temperature 1),
each labelled by the strategy it follows: for a correct completion c of strategy s, its distance to the correct
completion of another strategy s' of the same problem (the positive) is compared with its distance to
(a) c with one digit changed (a synthetic slip of the same strategy) and (b) the wrong completions the policy really
produced for that problem, of strategy s and of other strategies. Distances are DSDR's pairwise terms: semantic
S = (1 − cos)/2 of all-MiniLM-L6-v2 embeddings, formula uniqueness U = |F_c \\ F_x| / |F_c|, and g = (S + U)/2. Per
strategy pair (s, s'): the mean distance to each set, and the AUROC of the distance for "correct, other strategy"
against each negative set (1: other strategies always farther; 0.5: no separation).

Then, inside the real groups: for each correct completion, the group score g_i as the paper computes it (over every
other member, Eq. 6, 8) and as it would be over the other *correct* members only, with the AUROC of each for "no
other correct member uses my strategy" against "another correct member does", and the share of S_i that comes from
wrong members. Writes `docs/study/encoder-separation.json`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from common import correctness, sample

from dsdr_trl.toy.demo import DemoArguments, resolve_warmstart
from dsdr_trl.toy.task import solution_strategy, worked_solution

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "study" / "encoder-separation.json"
GROUP = 8
NEGATIVES = ("same_strategy_slip", "real_wrong_same_strategy", "real_wrong_other_strategy")


def slip(text: str, rng: random.Random) -> str:
    """`text` with one digit (inside a formula or the box) replaced by another."""
    positions = [i for i, ch in enumerate(text) if ch.isdigit()]
    i = rng.choice(positions)
    return text[:i] + rng.choice([d for d in "0123456789" if d != text[i]]) + text[i + 1 :]


def auroc(positives: list[float], negatives: list[float]) -> float | None:
    """P(a positive's distance > a negative's), ties counting half (the Mann–Whitney AUROC)."""
    if not positives or not negatives:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score([1] * len(positives) + [0] * len(negatives), positives + negatives))


def measure(regime: str, groups: int, seed: int, encoder) -> dict:
    from dsdr_trl.encoder import embed
    from dsdr_trl.formulas import extract_formulas
    from dsdr_trl.toy.warmstart import load_policy

    rng = random.Random(seed)
    settings = DemoArguments.from_regime(regime)
    model, tokenizer = load_policy(resolve_warmstart(settings, quiet=True))
    problems = settings.splits().rl
    samples = sample(model, tokenizer, problems, groups * GROUP, seed, max_new_tokens=settings.max_completion_length)
    flags = correctness(samples, problems)
    strategies = settings.strategy_names

    # Every text that is compared, embedded once.
    pairs: list[tuple[str, str, str, str, str]] = []  # (s, s', category, c, x)
    for problem, group, ok in zip(problems, samples, flags, strict=True):
        correct = sorted({t for t, good in zip(group, ok, strict=True) if good and solution_strategy(t)})
        wrong = [t for t, good in zip(group, ok, strict=True) if not good]
        for c in correct:
            s = solution_strategy(c)
            for other in strategies:
                if other == s:
                    continue
                pairs.append((s, other, "other_strategy_correct", c, worked_solution(problem, other)))
                pairs += [(s, other, "same_strategy_slip", c, slip(c, rng)) for _ in range(2)]
                for x in wrong:
                    category = "real_wrong_same_strategy" if solution_strategy(x) == s else "real_wrong_other_strategy"
                    pairs.append((s, other, category, c, x))
    texts = sorted({t for *_, c, x in pairs for t in (c, x)} | {t for group in samples for t in group})
    index = {t: i for i, t in enumerate(texts)}
    embeddings = embed(encoder, texts)
    formulas = {t: extract_formulas(t) for t in texts}

    def distances(c: str, x: str) -> dict[str, float]:
        semantic = float((1 - embeddings[index[c]] @ embeddings[index[x]]) / 2)
        fc = formulas[c]
        unique = len(fc - formulas[x]) / len(fc) if fc else 0.0
        return {"S": semantic, "U": unique, "g": (semantic + unique) / 2}

    table: dict[tuple[str, str], dict[str, dict[str, list[float]]]] = {}
    for s, other, category, c, x in pairs:
        bucket = table.setdefault((s, other), {})
        for name, value in distances(c, x).items():
            bucket.setdefault(category, {}).setdefault(name, []).append(value)
    per_pair = {}
    for (s, other), bucket in sorted(table.items()):
        positive = bucket.get("other_strategy_correct", {})
        entry = {"correct_completions": len(positive.get("S", []))}
        for category, values in bucket.items():
            entry[category] = {"count": len(values["S"])} | {
                f"mean_{name}": statistics.fmean(v) for name, v in values.items()
            }
        for name in ("S", "U", "g"):
            entry[f"auroc_{name}"] = {
                negative: auroc(positive.get(name, []), bucket.get(negative, {}).get(name, []))
                for negative in NEGATIVES
            }
        per_pair[f"{s} vs {other}"] = entry

    # Inside the real groups: the paper's g_i (over every other member) and g_i over the other correct members only.
    lone, shared = {"paper": [], "correct_only": []}, {"paper": [], "correct_only": []}
    from_wrong = []
    for group_texts, group_flags in zip(samples, flags, strict=True):
        for start in range(0, len(group_texts), GROUP):
            members = group_texts[start : start + GROUP]
            ok = group_flags[start : start + GROUP]
            for i, (c, good) in enumerate(zip(members, ok, strict=True)):
                if not good or not solution_strategy(c):
                    continue
                others = [j for j in range(len(members)) if j != i]
                mates = [j for j in others if ok[j]]
                s_all = [distances(c, members[j])["S"] for j in others]
                score = {
                    "paper": (statistics.fmean(s_all) + _uniqueness(formulas, c, [members[j] for j in others])) / 2,
                    "correct_only": (
                        statistics.fmean(distances(c, members[j])["S"] for j in mates)
                        + _uniqueness(formulas, c, [members[j] for j in mates])
                    )
                    / 2
                    if mates
                    else 0.0,
                }
                if sum(s_all):
                    from_wrong.append(sum(v for j, v in zip(others, s_all, strict=True) if not ok[j]) / sum(s_all))
                if not mates:
                    continue  # a lone correct member: nothing to compare strategies with
                alone = all(solution_strategy(members[j]) != solution_strategy(c) for j in mates)
                for reading, value in score.items():
                    (lone if alone else shared)[reading].append(value)
    in_groups = {
        "correct_with_a_correct_mate": len(lone["paper"]) + len(shared["paper"]),
        "lone_strategy_among_correct": len(lone["paper"]),
        "share_of_S_from_wrong_members": statistics.fmean(from_wrong) if from_wrong else None,
    }
    for reading in ("paper", "correct_only"):
        in_groups[reading] = {
            "mean_g_lone_strategy": statistics.fmean(lone[reading]) if lone[reading] else None,
            "mean_g_shared_strategy": statistics.fmean(shared[reading]) if shared[reading] else None,
            "auroc_lone_vs_shared": auroc(lone[reading], shared[reading]),
        }
    correct = sum(map(sum, flags))
    return {
        "problems": len(problems),
        "samples": sum(map(len, samples)),
        "accuracy": correct / sum(map(len, samples)),
        "per_pair": per_pair,
        "in_groups": in_groups,
    }


def _uniqueness(formulas: dict[str, set[str]], c: str, others: list[str]) -> float:
    """U_i of Eq. 8: the share of c's formulas that no other member writes."""
    fc = formulas[c]
    seen = set().union(*(formulas[x] for x in others)) if others else set()
    return len(fc - seen) / len(fc) if fc else 0.0


def main(argv: list[str] | None = None) -> int:
    import torch

    from dsdr_trl.encoder import load_diversity_encoder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regimes", nargs="+", default=["hard-family", "collapse"])
    parser.add_argument("--groups", type=int, default=2, help="Groups of 8 samples per RL problem.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    encoder = load_diversity_encoder()
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    for regime in args.regimes:
        start = time.time()
        results[regime] = measure(regime, args.groups, args.seed, encoder) | {"seed": args.seed}
        results[regime]["wall_seconds"] = time.time() - start
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(regime, json.dumps(results[regime]["in_groups"], indent=1), flush=True)
        for pair, entry in results[regime]["per_pair"].items():
            print(regime, pair, {n: entry[f"auroc_{n}"] for n in ("S", "U", "g")}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
