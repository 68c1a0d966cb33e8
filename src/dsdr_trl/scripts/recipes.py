"""`dsdr-trl recipes`: the training recipes and accelerate configs shipped with the package, and how a `--config` or
`--accelerate_config` value names one.

dsdr-trl recipes                 # names for `dsdr-trl train --config NAME`
dsdr-trl recipes --path          # the folder they live in, to copy one and edit it

Recipes live in the repository's `configs/` folder, which the wheel installs as `dsdr_trl/recipes/` (see
`pyproject.toml`); from a source checkout the folder itself is used. A recipe is named by its path under that folder
without `.yaml` (`qwen3-1.7b/dsdr`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .arguments import read_config
from .common import UsageError, user_input


def recipes_dir() -> Path:
    """The shipped recipes: `dsdr_trl/recipes/` in an installed wheel, else the checkout's `configs/`."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "recipes"
    return installed if installed.is_dir() else package.parents[1] / "configs"


def list_recipes() -> list[str]:
    """The names of the shipped training recipes (`model/method`), accelerate configs excluded."""
    root = recipes_dir()
    return sorted(
        str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.yaml") if p.parent.name != "accelerate"
    )


def resolve_recipe(name: str) -> str:
    """A `--config` value as a file: an existing path as it is, else a shipped recipe name such as `qwen3-1.7b/dsdr`."""
    candidate = recipes_dir() / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if Path(name).exists() or candidate.is_file():
        return name if Path(name).exists() else str(candidate)
    raise UsageError(
        f"Config file '{name}' does not exist and is not a shipped recipe; give a YAML path or one of the names "
        "`dsdr-trl recipes` lists (e.g. qwen3-1.7b/dsdr)."
    )


def prepare_recipe(recipe: dict[str, Any], path: str) -> None:
    """Readies a recipe read from `path` for the parser, in place: relative file paths (`dataset_name`,
    `passk_eval_dataset`, `model_name_or_path`) that exist next to the recipe, or inside the package when they start
    with `dsdr_trl/` (the toy policy), become absolute, so a recipe works from any directory; open-r1's `torch_dtype`
    becomes `dtype`."""
    from ..data import DATASETS

    if "torch_dtype" in recipe:
        recipe.setdefault("dtype", recipe.pop("torch_dtype"))
    for key in ("dataset_name", "passk_eval_dataset", "model_name_or_path"):
        value = recipe.get(key)
        if isinstance(value, str) and value not in DATASETS and not Path(value).expanduser().is_absolute():
            beside, inside = Path(path).resolve().parent / value, Path(__file__).resolve().parents[2] / value
            if beside.exists() or (value.startswith("dsdr_trl/") and inside.exists()):
                recipe[key] = str(beside if beside.exists() else inside)


def resolve_accelerate_config(name: str) -> str:
    """The file of `--accelerate_config`: a path, one of ours (`ddp`, `zero2`, `zero3`) or one TRL ships (`zero1`,
    `fsdp2`, ...), read as safe YAML and checked by accelerate's own loader before anything is launched."""
    from accelerate.commands.config.config_args import load_config_from_file
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    ours = recipes_dir() / "accelerate" / f"{name}.yaml"
    with user_input():
        path = str(ours) if not Path(name).exists() and ours.is_file() else name
        path = resolve_accelerate_config_argument(["--accelerate_config", path])[1]
        read_config(path)
        load_config_from_file(path)
    return path


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
