"""How every `dsdr-trl` subcommand reads and checks its arguments: TRL's `TrlParser` over the command's dataclasses,
with a `--config` YAML (checked for size and shape before anything expands it, each value against its field's type)
under the flags, every parse error as one `UsageError` line naming the flag and what it expects; and the checks of
row limits, output paths and models that fail in one line before any work."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
import sys
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .common import UsageError, user_input

# A YAML file holds settings, not data: past these bounds it is refused before anything expands it (an alias bomb of
# nested lists loads as shared references and only blows up once printed or stringified).
MAX_CONFIG_BYTES, MAX_CONFIG_NODES = 1_000_000, 100_000
# Keys of other TRL-based recipes (open-r1) that no field takes, and what to do instead.
FOREIGN_KEY_HINTS = {
    k: f"set {k.upper()} under the YAML's env: mapping instead"
    for k in ("wandb_project", "wandb_entity", "wandb_run_group")
}
FOREIGN_KEY_HINTS["dataset_prompt_column"] = "this package calls it prompt_column"
_EXPECTED = {"int": "an integer", "float": "a number", "list": "a list", "bool": "true or false"}
_EXPECTED["dict"] = "a mapping of plain values"


def accelerate_option_hints(taken: Iterable[str]) -> dict[str, str]:
    """What to do with a recipe key that is an `accelerate launch` option, other than `taken`, which no field takes."""
    from accelerate.commands.launch import launch_command_parser

    options = vars(launch_command_parser().parse_known_args(["script"])[0])
    advice = "an `accelerate launch` option: set it in an accelerate config file and pass --accelerate_config FILE"
    return {name: advice for name in options if name not in taken}


def _size(value: Any, budget: list[int]) -> None:
    """Counts `value`'s nodes (an alias at every use) and characters out of `budget`, failing when it is spent."""
    budget[0] -= 1
    budget[1] -= len(value) if isinstance(value, str) else 0
    if min(budget) < 0:
        raise RecursionError
    for child in [*value, *value.values()] if isinstance(value, dict) else value if isinstance(value, list) else ():
        _size(child, budget)


def read_config(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML file holds; no file, not YAML, too large or not a mapping fails in one line."""
    import yaml

    path, start = Path(path), f"Config file '{path}'"
    if not path.exists():
        raise UsageError(f"{start} does not exist.")
    if path.is_dir():
        raise UsageError(f"{start} is a folder; give a YAML file.")
    if not stat.S_ISREG(path.stat().st_mode) or path.stat().st_size > MAX_CONFIG_BYTES:
        raise UsageError(f"{start} is not a regular file of at most 1 MB; give a YAML file.")
    try:
        config = yaml.safe_load(path.read_text())
        _size(config, [MAX_CONFIG_NODES, MAX_CONFIG_BYTES])
    except (yaml.YAMLError, UnicodeDecodeError) as error:  # a binary file is not YAML either
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or getattr(error, "reason", None) or str(error).split("\n")[0]
        raise UsageError(f"{start} is not valid YAML ({problem}{where}); correct it there.") from error
    except RecursionError as error:
        raise UsageError(
            f"{start} expands to more than {MAX_CONFIG_NODES} values or 1 MB of text (YAML aliases?); a recipe "
            "holds settings, so write them out plainly."
        ) from error
    if not isinstance(config, dict | None):
        raise UsageError(
            f"{start} holds a YAML {type(config).__name__}, not a mapping of field names to values "
            "(`learning_rate: 1.0e-6`, one per line)."
        )
    return config or {}


def pop_config(argv: list[str], resolve: Callable[[str], str] = str) -> tuple[dict[str, Any], str | None]:
    """Takes `--config PATH` out of `argv`; returns its YAML mapping and its path (`resolve`d), or `({}, None)`."""
    if "--config" not in argv:
        return {}, None
    index = argv.index("--config")
    if index + 1 >= len(argv):
        raise UsageError("--config needs a YAML file path.")
    path = resolve(argv.pop(index + 1))
    argv.pop(index)
    return read_config(path), path


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value `argv` gives `flag` (`--flag VALUE` or `--flag=VALUE`; the last one wins), or `None`."""
    value = None
    for index, arg in enumerate(argv):
        if arg == flag and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def _fits(value: Any, hint: Any) -> bool:
    """Whether a YAML value can go to a field annotated `hint`; a string always can (the parser converts it)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if isinstance(value, str) or hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin in (list, tuple):
        return isinstance(value, list) and all(_fits(item, args[0] if args else Any) for item in value)
    if hint is dict or origin is dict:
        return isinstance(value, dict) and all(_fits(item, args[1] if args else Any) for item in value.values())
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if hint in (bool, int, type(None)):
        return isinstance(value, hint) and (hint is bool or not isinstance(value, bool))
    return hint is not str or not isinstance(value, list | dict)


def _expected(hint: Any) -> str:
    """What a field annotated `hint` takes, in words (`a number or a list`)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = [getattr(typing.get_origin(a) or a, "__name__", "") for a in (typing.get_args(hint) if union else [hint])]
    return " or ".join(dict.fromkeys(_EXPECTED.get(kind, "text") for kind in kinds if kind != "NoneType"))


def make_parser(dataclass_types: tuple, prog: str):
    """TRL's `TrlParser` whose errors are one `UsageError` line: a value its field's type refuses (or a non-finite
    number) names the flag and what it expects; any other parse error names the flag and points at `--help`."""
    import argparse

    from trl import TrlParser

    expects = {float: "a number", int: "an integer"}

    class WrongType(argparse.ArgumentTypeError):
        """A value its field's type refused."""

    class Parser(TrlParser):
        def add_argument(self, *names, **kwargs):
            convert = kwargs.get("type")
            # A bool field takes `--flag` alone (`const=True`) or `--flag VALUE`, converted by the parser's own function.
            expected = "true or false" if kwargs.get("const") is True else expects.get(convert)
            if expected is not None:

                def typed(text: str, convert=convert, expected=expected):
                    try:
                        value = convert(text)
                    except (ValueError, argparse.ArgumentTypeError):
                        shown = text if expected == "true or false" else repr(text)
                        raise WrongType(f"expects {expected}, got {shown}.") from None
                    if isinstance(value, float) and not math.isfinite(value):
                        raise WrongType(f"expects a finite number, got {text!r}.")
                    return value

                kwargs["type"] = typed
            return super().add_argument(*names, **kwargs)

        def error(self, message: str):
            error = sys.exc_info()[1]  # argparse calls `error` while it handles the `ArgumentError`
            if isinstance(error, argparse.ArgumentError) and error.argument_name:
                flag = error.argument_name.split("/")[0]
                if isinstance(error.__context__, WrongType):
                    raise UsageError(f"{flag} {error.message}")
                message = f"{flag}: {error.message}"
            raise UsageError(f"{message.rstrip('.')}; see `{self.prog} --help`.")

    return Parser(dataclass_types, prog=prog)


def parse(parser: Any, argv: list[str], config: dict[str, Any], command: str, hints: dict | None = None, preset=None):
    """
    The dataclasses of `parser` from `config` (a `--config` YAML's mapping) with the flags of `argv` over it.

    Every YAML key must be a field (an unknown one is named with what to do, from `hints` and [`FOREIGN_KEY_HINTS`])
    and its value of the field's type; `env:` sets environment variables, as in TRL. `preset=(flag, settings)` names a
    flag whose value's `settings(name)` are applied first, so that the other flags and the YAML win over it; it must
    be given on the command line.
    """
    hints_of = {name: hint for dtype in parser.dataclass_types for name, hint in typing.get_type_hints(dtype).items()}
    fields = {f.name for dtype in parser.dataclass_types for f in dataclasses.fields(dtype) if f.init}
    if unknown := [key for key in config if key not in fields and key != "env"]:
        advice = {**FOREIGN_KEY_HINTS, **(hints or {})}
        described = ", ".join(f"'{key}' ({advice.get(key, 'no such field')})" for key in unknown)
        raise UsageError(
            f"the --config YAML has keys that dsdr-trl {command} does not take: {described}; remove them from the "
            f"YAML (`dsdr-trl {command} --help` lists every field)."
        )
    for key, value in config.items():
        hint = dict[str, str | int | float | bool] if key == "env" else hints_of[key]
        if not _fits(value, hint):
            shown = f"a {type(value).__name__}" if isinstance(value, list | dict) else repr(value)
            raise UsageError(f"'{key}' in the --config YAML expects {_expected(hint)}, got {shown}; correct it there.")
    with user_input():  # a preset's lookup and the dataclasses' own checks (`__post_init__`) raise `ValueError`
        if preset is not None:
            if preset[0][2:] in config:
                raise UsageError(
                    f"give {preset[0]} on the command line, not in the --config file, so that its settings apply."
                )
            parser.set_defaults(**preset[1](flag_value(argv, preset[0])))
        os.environ.update({key: str(value) for key, value in config.pop("env", {}).items()})
        parser.set_defaults_with_config(**config)
        return parser.parse_args_into_dataclasses(args=argv)


def check_row_limits(**limits: int | None) -> None:
    """Fails when a row limit (`--name N`) is given but is not a positive number of rows."""
    for name, value in limits.items():
        if value is not None and value < 1:
            raise UsageError(
                f"--{name} must be a positive number of rows, got {value}; leave it out to use every row."
            )


def check_output_path(path: str, flag: str, directory: bool) -> None:
    """Fails before any work when `path` cannot take the output `flag` names (a directory, else a file): empty, of the
    wrong kind, a dangling link, a device, under a file or not writable. Creates nothing."""
    target = Path(path).expanduser()
    existing = next(parent for parent in [target, *target.parents] if parent.exists())
    if not path:
        raise UsageError(f"{flag} is empty; pass a path.")
    if target.is_symlink() and not target.exists():
        raise UsageError(f"{flag} '{path}' is a link to '{os.readlink(target)}', which does not exist; choose a path.")
    if directory and target.exists() and not target.is_dir():
        raise UsageError(f"{flag} '{path}' is an existing file, not a directory; pass a directory path.")
    if not directory and target.is_dir():
        raise UsageError(f"{flag} '{path}' is a directory; pass a file path such as '{target / 'results.json'}'.")
    if not directory and target.exists() and not target.is_file():
        raise UsageError(f"{flag} '{path}' is not a regular file (a device?); pass a file path.")
    if existing != target and not existing.is_dir():
        raise UsageError(f"{flag} '{path}' lies under '{existing}', which is a file; choose another path.")
    if not os.access(existing if existing.is_dir() else existing.parent, os.W_OK):
        raise UsageError(f"{flag} '{path}': '{existing}' is not writable; choose a path you can write to.")


def check_model(name: str, trusted: bool, fix: str) -> str | None:
    """Fails in one line when the model `name` is a local folder that is missing or brings its own code (an
    `auto_map`) without `trusted` (transformers would ask on the terminal); returns why the Hub is out of reach for a
    Hub model, found in seconds (its client would retry for a minute), else `None`."""
    from huggingface_hub import is_offline_mode

    from ..data import hub_unreachable_reason, looks_local

    local = Path(name).expanduser()
    if looks_local(name) and not local.exists():
        raise UsageError(f"Model directory '{name}' does not exist.")
    for file in ("config.json", "tokenizer_config.json"):
        if not trusted and (local / file).is_file() and "auto_map" in json.loads((local / file).read_text()):
            raise UsageError(
                f"The model '{name}' comes with its own code ({file} has an auto_map), not run by default; {fix}."
            )
    return None if looks_local(name) or is_offline_mode() else hub_unreachable_reason()


def model_unavailable(name: str, reason: str | OSError, flag: str) -> FileNotFoundError:
    """The one-line error for a model that could not be loaded because of `reason`."""
    from huggingface_hub import is_offline_mode

    if isinstance(reason, OSError):
        offline = "HF_HUB_OFFLINE is set and it is not in the local cache"
        reason = offline if is_offline_mode() else str(reason).split("\n")[0]
    return FileNotFoundError(f"Could not load the model '{name}' ({reason}). Pass a local directory with {flag}.")
