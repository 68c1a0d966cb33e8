"""Writes the committed confirmation results the demo's report repeats: `src/dsdr_trl/toy/assets/study-results/findings.json`.

    python experiments/findings.py

From `docs/study/minority-rescue/summary.json` (confirmation stage), `docs/study/confirm/study.json` (hard-family) and
`docs/study/headroom.json`: per regime, the confirmation seeds, GRPO's and DSDR's means on the regime's primary metric,
the seed-paired difference with its standard error, and one plain sentence built from these numbers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "docs" / "study"
OUT = ROOT / "src" / "dsdr_trl" / "toy" / "assets" / "study-results" / "findings.json"


def verdict(mean: float, error: float) -> str:
    if mean > 2 * error:
        return "DSDR is ahead by more than twice the standard error"
    if mean < -2 * error:
        return "GRPO is ahead by more than twice the standard error"
    return "the two cannot be told apart (within twice the standard error)"


def minority_rescue() -> dict | None:
    path = STUDY / "minority-rescue" / "summary.json"
    if not path.exists() or "confirm" not in json.loads(path.read_text()):
        return None
    confirm = json.loads(path.read_text())["confirm"]
    if "dsdr" not in confirm["differences"]:
        return None
    d = confirm["differences"]["dsdr"]["E pass@16"]
    share = {arm: confirm["arms"][arm]["E minority share"]["mean"] for arm in ("grpo", "dsdr")}
    sentence = (
        f"Built so that most RL groups are all-correct (where GRPO has no signal and DSDR's bonus ranks the correct "
        f"completions) and only the rarest strategy solves the evaluation family: {verdict(d['mean'], d['standard_error'])}"
        f"; the rare strategy's share on the family is {share['grpo']:.1f} % after GRPO and {share['dsdr']:.1f} % "
        f"after DSDR."
    )
    return {
        "seeds": confirm["arms"]["grpo"]["seeds"],
        "metric": "pass@16 on the family only round-up solves",
        "grpo": confirm["arms"]["grpo"]["E pass@16"]["mean"],
        "dsdr": confirm["arms"]["dsdr"]["E pass@16"]["mean"],
        "difference": {"mean": d["mean"], "standard_error": d["standard_error"]},
        "sentence": sentence,
    }


def hard_family() -> dict:
    cell = json.loads((STUDY / "confirm" / "study.json").read_text())["cells"]["hard-family"]
    d = cell["differences"]["dsdr"]["pass@16"]
    sentence = f"On this held-out family {verdict(d['mean'], d['standard_error'])}."
    headroom_path = STUDY / "headroom.json"
    if headroom_path.exists() and "hard-family" in json.loads(headroom_path.read_text()):
        entry = json.loads(headroom_path.read_text())["hard-family"]
        after = entry.get("after_grpo", entry["warmstart"])
        mixture, single = 100 * after["uniform_mixture"]["pass@16"], 100 * after["best_single_strategy"]["pass@16"]
        free = 100 * after["free"]["pass@16_from_accuracy"]
        sentence += (
            f" After GRPO the three strategies used evenly would reach {mixture:.1f} % pass@16, the best single one "
            f"{single:.1f} %, and GRPO's own policy already {free:.1f} %: at most about {mixture - free:.0f} points "
            "were there for any method to add, and DSDR only slows GRPO's collapse onto one strategy."
        )
    return {
        "seeds": cell["methods"]["grpo"]["seeds"],
        "metric": "pass@16 on the held-out family b ∈ {8, 9}",
        "grpo": 100 * cell["methods"]["grpo"]["pass@16"],
        "dsdr": 100 * cell["methods"]["dsdr"]["pass@16"],
        "difference": {"mean": d["mean"], "standard_error": d["standard_error"]},
        "sentence": sentence,
    }


def main() -> int:
    regimes = {name: entry for name, entry in (("minority-rescue", minority_rescue()), ("hard-family", hard_family()))}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps({"regimes": {k: v for k, v in regimes.items() if v}}, indent=1, ensure_ascii=False) + "\n"
    )
    print(OUT.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
