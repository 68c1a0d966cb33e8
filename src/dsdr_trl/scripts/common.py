"""What the `dsdr-trl` subcommands share: the error a user can fix, and running a subcommand so that such an error is
one line and exit status 2, never a traceback (set `DSDR_TRL_DEBUG=1` to see the traceback anyway); the check of a
`--config` YAML's keys; the run settings `dsdr-trl train` saves next to the model and `dsdr-trl eval` reads back."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "RUN_CONFIG_NAME",
    "UsageError",
    "check_config_keys",
    "check_config_path",
    "check_output_path",
    "check_row_limits",
    "one_line_errors",
    "read_config",
    "read_run_config",
    "run_command",
    "save_run_config",
]

# The run's arguments as JSON, written by `dsdr-trl train` into its output_dir (TRL's `training_args.bin` is a pickle).
RUN_CONFIG_NAME = "dsdr_config.json"

# Keys of other TRL-based recipes (open-r1) that no field takes, and what to do instead.
FOREIGN_KEY_HINTS = {
    "dataset_prompt_column": "this package calls it prompt_column",
    "wandb_project": "set WANDB_PROJECT under the YAML's env: mapping instead",
    "wandb_entity": "set WANDB_ENTITY under the YAML's env: mapping instead",
    "wandb_run_group": "set WANDB_RUN_GROUP under the YAML's env: mapping instead",
}


class UsageError(Exception):
    """An error in what the user asked for; the command prints its message and exits with status 2."""


def read_config(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML config file holds; a file that is not valid YAML, or not a mapping, is a `UsageError`."""
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text())
    except UnicodeDecodeError as error:
        raise UsageError(f"Config file '{path}' is not a text file ({error.reason}); give a YAML file.") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).split("\n")[0]
        raise UsageError(f"Config file '{path}' is not valid YAML ({problem}{where}); correct it there.") from error
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise UsageError(
            f"Config file '{path}' holds a YAML {type(config).__name__}, not a mapping of field names to values "
            "(`learning_rate: 1.0e-6`, one per line)."
        )
    return config


def check_config_path(argv: list[str], resolve: Callable[[str], str] | None = None) -> None:
    """Fails with one clear line when `--config` lacks its value, names a missing file (`resolve` maps names to
    files) or a file that is not a YAML mapping."""
    if "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            raise UsageError("--config needs a YAML file path.")
        if resolve is not None:
            path = Path(resolve(argv[index + 1]))
        else:
            path = Path(argv[index + 1])
            if not path.is_file():
                raise FileNotFoundError(f"Config file '{path}' does not exist.")
        read_config(path)


def check_row_limits(**limits: int | None) -> None:
    """Fails when a row limit (`--name N`) is given but is not a positive number of rows."""
    for name, value in limits.items():
        if value is not None and value < 1:
            raise UsageError(
                f"--{name} must be a positive number of rows, got {value}; leave it out to use every row."
            )


def check_output_path(path: str, flag: str, directory: bool) -> None:
    """
    Fails before any work is done when `path` cannot take the output that `flag` names; creates nothing.

    Args:
        path (`str`):
            Where the command will write.
        flag (`str`):
            The option that gave it, for the message (e.g. `--output`).
        directory (`bool`):
            Whether the output is a directory (else a file).
    """
    target = Path(path).expanduser()
    if directory and target.exists() and not target.is_dir():
        raise UsageError(f"{flag} '{path}' is an existing file, not a directory; pass a directory path.")
    if not directory and target.is_dir():
        raise UsageError(f"{flag} '{path}' is a directory; pass a file path such as '{target / 'results.json'}'.")
    existing = next(parent for parent in [target, *target.parents] if parent.exists())
    if existing != target and not existing.is_dir():
        raise UsageError(f"{flag} '{path}' lies under '{existing}', which is a file; choose another path.")
    if not os.access(existing if existing.is_dir() else existing.parent, os.W_OK):
        raise UsageError(f"{flag} '{path}': '{existing}' is not writable; choose a path you can write to.")


# argparse's messages name a flag with its aliases ("argument --learning_rate/--learning-rate: ..."); a value that the
# flag's type refused reads "invalid float value: 'abc'", or, from transformers' `string_to_bool`, "Truthy value
# expected: got maybe but expected one of yes/no, ...".
_ARGUMENT = re.compile(r"argument (--[^/:\s]+)\S*: (.*)", re.DOTALL)
_INVALID_VALUE = re.compile(r"invalid (\w+) value: (.*)|Truthy value expected: got (\S+) .*", re.DOTALL)
_EXPECTED = {"int": "an integer", "float": "a number", None: "true or false"}


def one_line_errors(parser):
    """Makes `parser` (an `argparse.ArgumentParser`) raise a one-line `UsageError` where argparse would print the
    whole usage (hundreds of lines for `dsdr-trl train`) and exit. Returns the parser."""

    def error(message: str):
        if (argument := _ARGUMENT.fullmatch(message)) is not None:
            flag, detail = argument.groups()
            value = _INVALID_VALUE.fullmatch(detail)
            if value is not None and value.group(1) in _EXPECTED:
                raise UsageError(
                    f"{flag} expects {_EXPECTED[value.group(1)]}, got {value.group(2) or value.group(3)}."
                )
            message = f"{flag}: {detail}"
        raise UsageError(f"{message.rstrip('.')}; see `{parser.prog} --help`.")

    parser.error = error
    return parser


def check_config_keys(parser: Any, config_path: str, command: str, hints: dict[str, str] | None = None) -> None:
    """
    Fails with one line naming every key of the `--config` YAML that no field of `parser` takes, and what to do.

    TRL's parser would reject such keys with advice to pass `fail_with_unknown_args=False`, which a command-line user
    cannot do. `hints` (key -> advice) adds to [`FOREIGN_KEY_HINTS`]; `env` (environment variables) is TRL's own key.
    """
    import dataclasses

    config = read_config(config_path)
    known = {f.name for dtype in parser.dataclass_types for f in dataclasses.fields(dtype) if f.init} | {"env"}
    unknown = [key for key in config if key not in known]
    if unknown:
        advice = {**FOREIGN_KEY_HINTS, **(hints or {})}
        described = [f"'{key}' ({advice.get(key, 'no such field')})" for key in unknown]
        raise UsageError(
            f"the --config YAML has keys that dsdr-trl {command} does not take: {', '.join(described)}; remove them "
            f"from the YAML (`dsdr-trl {command} --help` lists every field)."
        )


def save_run_config(output_dir: str, sections: dict[str, Any]) -> Path:
    """Writes `sections` (e.g. `{"training_args": {...}}`) as `output_dir/dsdr_config.json` and returns the path."""
    path = Path(output_dir) / RUN_CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sections, indent=2, default=str, ensure_ascii=False))
    return path


def read_run_config(model_dir: str) -> dict[str, Any] | None:
    """The settings of the training run that produced `model_dir` (its `dsdr_config.json`, or that of the run
    directory holding a `checkpoint-N` folder), or `None` when there is none."""
    directory = Path(model_dir).expanduser()
    candidates = [directory / RUN_CONFIG_NAME]
    if directory.name.startswith("checkpoint-"):
        candidates.append(directory.parent / RUN_CONFIG_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def run_command(name: str, main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Runs a subcommand's `main(argv)` and returns its exit status; a fixable error becomes one line and status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(main(argv) or 0)
    except (UsageError, ValueError, FileNotFoundError) as error:
        if os.environ.get("DSDR_TRL_DEBUG"):
            raise
        print(f"dsdr-trl {name}: error: {error}", file=sys.stderr)
        return 2
