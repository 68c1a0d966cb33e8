"""The recipes and accelerate configs shipped with the package, and `dsdr-trl train`'s multi-process launch.

Recipes live in the repository's `configs/` folder, which the wheel installs as `dsdr_trl/recipes/` (see
`pyproject.toml`); from a source checkout the folder itself is used. A recipe is named by its path under that folder
without `.yaml` (`qwen3-1.7b/dsdr`), an accelerate config by its name (`ddp`, `zero2`, `zero3`, then TRL's own
`zero1`, `fsdp1`, `fsdp2`, `multi_gpu`, `single_gpu`) or a path.

`dsdr-trl train --accelerate_config zero2 --num_processes 8 --config ...` re-launches the training module through
`accelerate launch`, as `trl grpo` does (`trl.cli.accelerate_config`, `trl.cli.accelerate_launcher`): the launch
flags go to accelerate, every other argument to the processes it starts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .common import read_config

__all__ = [
    "LAUNCH_FLAGS",
    "accelerate_option_hints",
    "check_before_launch",
    "launch",
    "list_recipes",
    "prepare_recipe",
    "recipes_dir",
    "resolve_accelerate_config",
    "resolve_recipe",
    "split_launch_args",
]

# `accelerate launch` flags that `dsdr-trl train` takes (each with a value) and hands over instead of parsing.
LAUNCH_FLAGS = (
    "--accelerate_config",
    "--num_processes",
    "--num_machines",
    "--machine_rank",
    "--main_process_ip",
    "--main_process_port",
    "--mixed_precision",
)


def accelerate_option_hints() -> dict[str, str]:
    """What to do with a recipe key that is an `accelerate launch` option other than [`LAUNCH_FLAGS`] (`zero_stage`,
    `gpu_ids`, ...): such settings belong in an accelerate config file."""
    from accelerate.commands.launch import launch_command_parser

    taken = {flag[2:] for flag in LAUNCH_FLAGS}
    advice = "an `accelerate launch` option: set it in an accelerate config file and pass --accelerate_config FILE"
    return {action.dest: advice for action in launch_command_parser()._actions if action.dest not in taken}


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
    if Path(name).is_file():
        return name
    candidate = recipes_dir() / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if candidate.is_file():
        return str(candidate)
    raise FileNotFoundError(
        f"Config file '{name}' does not exist and is not a shipped recipe; give a YAML path or one of the names "
        "`dsdr-trl recipes` lists (e.g. qwen3-1.7b/dsdr)."
    )


def resolve_accelerate_config(name: str) -> str:
    """`--accelerate_config`: a file, one of ours (`ddp`, `zero2`, `zero3`), or one TRL ships (`zero1`, `fsdp2`...)."""
    ours = recipes_dir() / "accelerate" / f"{name}.yaml"
    if not Path(name).is_file() and ours.is_file():
        return str(ours)
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    return resolve_accelerate_config_argument(["--accelerate_config", name])[1]


# Recipe keys that name files; a relative one is read next to the recipe when it exists there, and one that starts with
# `dsdr_trl/` inside the installed package (the toy policy the tiny recipe trains from).
_PATH_KEYS = ("dataset_name", "passk_eval_dataset", "model_name_or_path")
# Keys of other TRL-based recipes (open-r1) with the name this package's parser uses.
_RENAMED_KEYS = {"torch_dtype": "dtype"}


def prepare_recipe(path: str, out_dir: str) -> tuple[str, list[str]]:
    """
    Reads a recipe and writes the copy that the argument parser reads, returning its path and the launch arguments.

    The copy differs in three ways: launch keys ([`LAUNCH_FLAGS`] without dashes, e.g. `num_processes`) are taken
    out and returned as `accelerate launch` arguments; relative file paths (`dataset_name`, `passk_eval_dataset`,
    `model_name_or_path`) that exist next to the recipe, or inside the package when they start with `dsdr_trl/`, become
    absolute, so a recipe works from any directory; and `torch_dtype` (open-r1's name) becomes `dtype`.
    """
    import yaml

    from ..data import DATASETS

    recipe = read_config(path)
    launch_args: list[str] = []
    for flag in LAUNCH_FLAGS:
        value = recipe.pop(flag[2:], None)
        if value is not None:
            launch_args += [flag, str(value)]
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
    copy = Path(out_dir) / Path(path).name
    copy.write_text(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True))
    return str(copy), launch_args


def split_launch_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Splits `argv` into `accelerate launch` arguments ([`LAUNCH_FLAGS`]) and the training script's arguments."""
    launch_args: list[str] = []
    script_args: list[str] = []
    index = 0
    while index < len(argv):
        flag, _, inline = argv[index].partition("=")
        if flag in LAUNCH_FLAGS:
            if inline:
                value, index = inline, index + 1
            elif index + 1 < len(argv):
                value, index = argv[index + 1], index + 2
            else:
                raise ValueError(f"{flag} needs a value.")
            if flag == "--accelerate_config":
                launch_args += ["--config_file", resolve_accelerate_config(value)]
            else:
                launch_args += [flag, value]
        else:
            script_args.append(argv[index])
            index += 1
    return launch_args, script_args


def check_before_launch(launch_args: list[str], script_args: list[str], module: str = "dsdr_trl.scripts.train") -> int:
    """
    Runs `python -m module [script_args] --dry_run` in one process with the same launch settings, before `accelerate
    launch` starts many, and returns its exit status.

    Bad input (a wrongly typed value, a data file without answers, an output path of the wrong kind...) is then one
    line and exit status 2 from this command, as in a single-process run, instead of one line from every launched
    process followed by the launcher's traceback. The dry run loads no weights; its plan is not shown (the launched
    processes print theirs), its error line is.
    """
    import subprocess

    flags = [
        "--accelerate_config" if index % 2 == 0 and item == "--config_file" else item
        for index, item in enumerate(launch_args)
    ]
    kept = _without_flag(script_args, "--dry_run")
    command = [sys.executable, "-m", module, *kept, *flags, "--dry_run", "true"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 (as in `launch`)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("dsdr-trl ") and ": error: " in line]
        print("\n".join(errors) if result.returncode == 2 and errors else result.stderr.rstrip(), file=sys.stderr)
    return result.returncode


def _without_flag(argv: list[str], flag: str) -> list[str]:
    """`argv` without `flag` and its value (`--flag`, `--flag VALUE` or `--flag=VALUE`)."""
    kept: list[str] = []
    index = 0
    while index < len(argv):
        if argv[index] == flag:
            has_value = index + 1 < len(argv) and not argv[index + 1].startswith("--")
            index += 2 if has_value else 1
        elif argv[index].startswith(flag + "="):
            index += 1
        else:
            kept.append(argv[index])
            index += 1
    return kept


def launch(launch_args: list[str], script_args: list[str], module: str = "dsdr_trl.scripts.train") -> int:
    """Runs `accelerate launch [launch_args] -m module [script_args]` and returns its exit status.

    On a machine without CUDA, a multi-GPU config is launched with torchrun's CPU processes (gloo): accelerate's own
    `--cpu` starts a single process unless MPI is set up, so it is not used; mixed precision is switched off unless
    asked for, and every process needs `use_cpu: true` (the tiny recipe sets it).
    """
    import subprocess

    import torch

    command = [sys.executable, "-m", "accelerate.commands.launch", *launch_args]
    if not torch.cuda.is_available() and "--mixed_precision" not in launch_args:
        command += ["--mixed_precision", "no"]
    command += ["-m", module, *script_args]
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[dsdr-trl train] launching: {' '.join(command[1:])}", flush=True)
    return subprocess.call(command)  # noqa: S603 (our own interpreter and module, arguments as a list)
