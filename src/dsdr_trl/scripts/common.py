"""What the `dsdr-trl` subcommands share: checks of a model and an output path before any work, atomic writes, and
`run_command`: an error is one line (`DSDR_TRL_DEBUG=1` shows the traceback), exit status 2 for what the user typed
(a `UsageError`), 1 naming where a failure inside the run was raised."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The run's arguments as JSON, written by `dsdr-trl train` into its output_dir (TRL's `training_args.bin` is a pickle).
RUN_CONFIG_NAME = "dsdr_config.json"
DATA_HELP = "a named adapter (dapo-math-17k, math500, aime24, aime25, minerva, olympiadbench, gsm8k), a local "
DATA_HELP += ".jsonl/.json/.parquet/.csv file, or a Hub dataset id"


class UsageError(ValueError):
    """An error in what the user asked for; the command prints its message and exits with status 2."""


@contextlib.contextmanager
def user_input():
    """A `ValueError` or `OSError` raised while the user's arguments, files and data are checked becomes a `UsageError`."""
    try:
        yield
    except (ValueError, OSError) as error:
        raise UsageError(str(error).split("\n")[0]) from error


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


def write_json(path: str | Path, data: Any) -> None:
    """Writes `data` as JSON to a temporary file next to `path`, then renames it into place: a failure (a full disk,
    a value JSON cannot hold) leaves an earlier file at `path` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        try:
            json.dump(data, file, indent=2, ensure_ascii=False)
            file.flush()
            os.fsync(file.fileno())
        except BaseException:
            os.unlink(file.name)
            raise
    os.replace(file.name, path)


def run_command(name: str, main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Runs a subcommand's `main(argv)`; returns its exit status, printing an error in one line (on the first process)."""
    try:
        return int(main(list(sys.argv[1:] if argv is None else argv)) or 0)
    except Exception as error:
        if os.environ.get("DSDR_TRL_DEBUG"):
            raise
        line, status = str(error), 2
        if not isinstance(error, UsageError):
            frame = traceback.extract_tb(error.__traceback__)[-1]
            first = str(error).splitlines()[0] if str(error) else ""
            line = f"{type(error).__name__} in {Path(frame.filename).name}:{frame.lineno} ({frame.name}): {first}"
            line, status = line + " (DSDR_TRL_DEBUG=1 shows the traceback)", 1
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"dsdr-trl {name}: error: {line}", file=sys.stderr)
        return status
