"""`dsdr-trl recipes`: the training recipes and accelerate configs shipped with the package.

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

from .common import UsageError

# `accelerate launch` flags that `dsdr-trl train` takes (each with a value), also as recipe keys, and hands over.
LAUNCH_FLAGS = (
    "--accelerate_config",
    "--num_processes",
    "--num_machines",
    "--machine_rank",
    "--main_process_ip",
    "--main_process_port",
    "--mixed_precision",
)


def recipes_dir() -> Path:
    """The shipped recipes: `dsdr_trl/recipes/` in an installed wheel, else the checkout's `configs/`."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "recipes"
    return installed if installed.is_dir() else package.parents[1] / "configs"


def list_recipes() -> list[str]:
    """The names of the shipped training recipes (`model/method`), accelerate configs excluded."""
    root = recipes_dir()
    return sorted(
        str(path.relative_to(root).with_suffix(""))
        for path in root.glob("*/*.yaml")
        if path.parent.name != "accelerate"
    )


def resolve_recipe(name: str) -> str:
    """A `--config` value as a file: an existing path as it is, else a shipped recipe name such as `qwen3-1.7b/dsdr`."""
    candidate = recipes_dir() / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if Path(name).exists() or not candidate.is_file():
        if not Path(name).exists():
            raise UsageError(
                f"Config file '{name}' does not exist and is not a shipped recipe; give a YAML path or one of the "
                "names `dsdr-trl recipes` lists (e.g. qwen3-1.7b/dsdr)."
            )
        return name
    return str(candidate)


# Recipe keys that name files; a relative one is read next to the recipe when it exists there, and one that starts with
# `dsdr_trl/` inside the installed package (the toy policy the tiny recipe trains from).
_PATH_KEYS = ("dataset_name", "passk_eval_dataset", "model_name_or_path")
# Keys of other TRL-based recipes (open-r1) with the name this package's parser uses.
_RENAMED_KEYS = {"torch_dtype": "dtype"}


def prepare_recipe(recipe: dict[str, Any], path: str) -> list[str]:
    """
    Readies a recipe read from `path` for the argument parser, in place, and returns its launch arguments.

    Launch keys ([`LAUNCH_FLAGS`] without dashes, e.g. `num_processes`) are taken out and returned as flags; relative
    file paths (`dataset_name`, `passk_eval_dataset`, `model_name_or_path`) that exist next to the recipe, or inside
    the package when they start with `dsdr_trl/`, become absolute, so a recipe works from any directory; and
    `torch_dtype` (open-r1's name) becomes `dtype`.
    """
    from ..data import DATASETS

    launch_args = [item for flag in LAUNCH_FLAGS if flag[2:] in recipe for item in (flag, str(recipe.pop(flag[2:])))]
    for old, new in _RENAMED_KEYS.items():
        if old in recipe:
            recipe.setdefault(new, recipe.pop(old))
    base = Path(path).resolve().parent
    for key in _PATH_KEYS:
        value = recipe.get(key)
        if isinstance(value, str) and value not in DATASETS and not Path(value).expanduser().is_absolute():
            inside_package = Path(__file__).resolve().parents[2] / value
            if (base / value).exists():
                recipe[key] = str(base / value)
            elif value.startswith("dsdr_trl/") and inside_package.exists():
                recipe[key] = str(inside_package)
    return launch_args


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
