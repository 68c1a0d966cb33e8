"""`dsdr-trl recipes`: the training recipes and accelerate configs shipped with the package.

dsdr-trl recipes                 # names for `dsdr-trl train --config NAME`
dsdr-trl recipes --path          # the folder they live in, to copy one and edit it
"""

from __future__ import annotations

import argparse
import sys

from .launch import list_recipes, recipes_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dsdr-trl recipes", description=__doc__.split("\n")[0])
    parser.add_argument("--path", action="store_true", help="Print the folder of the recipes and nothing else.")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    root = recipes_dir()
    if args.path:
        print(root)
        return 0
    print(f"Recipes (dsdr-trl train --config NAME), in {root}:")
    for name in list_recipes():
        print(f"  {name}")
    configs = sorted(path.stem for path in (root / "accelerate").glob("*.yaml"))
    print(f"Accelerate configs (--accelerate_config NAME): {', '.join(configs)}, or TRL's zero1, fsdp1, fsdp2, ...")
    print(
        f"Several nodes, vLLM serving on the first (sbatch --nodes=N FILE RECIPE): {root / 'slurm' / 'dsdr_multinode.slurm'}"
    )
    return 0
