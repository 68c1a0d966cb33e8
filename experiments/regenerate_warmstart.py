"""Retrains a warm start of the toy task from its seed into DIR and prints its held-out pass@1, pass@16 and strategy
mix: how the weights shipped in `src/dsdr_trl/toy/assets/` were made (another machine may differ in the last digits).

    python experiments/regenerate_warmstart.py DIR                              # the default regime's warm start
    python experiments/regenerate_warmstart.py DIR --regime minority-rescue     # any `dsdr-trl demo` flag applies

Then `dsdr-trl demo --warmstart DIR` trains from it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from dsdr_trl.encoder import load_diversity_encoder
from dsdr_trl.scripts.demo import parse_args
from dsdr_trl.toy.demo import evaluate
from dsdr_trl.toy.warmstart import ASSETS_DIR, load_policy, train_warmstart


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    target, settings = Path(argv[0]), parse_args(argv[1:])
    if target.resolve().is_relative_to(ASSETS_DIR.resolve()):
        print(f"error: DIR must name a directory outside the installed package, got {target}.", file=sys.stderr)
        return 2
    torch.set_num_threads(settings.num_threads)
    train_warmstart(target, **settings.warmstart_recipe())
    model, tokenizer = load_policy(target)
    result = evaluate(model, tokenizer, settings.splits().held_out, settings, 0, load_diversity_encoder())
    pass_k = result["pass@k"]
    print(
        f"warm start in {target}: held-out pass@1 {100 * pass_k['1']:.1f} %, pass@{settings.num_samples} "
        f"{100 * pass_k[str(settings.num_samples)]:.1f} %, strategies {result['strategy_share']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
