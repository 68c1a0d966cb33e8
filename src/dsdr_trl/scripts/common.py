"""What the `dsdr-trl` subcommands share: atomic writes of their JSON files, and `run_command`: an error is one line
(`DSDR_TRL_DEBUG=1` shows the traceback), exit status 2 for what the user typed (a `UsageError`), 1 naming where a
failure inside the run was raised."""

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


class UsageError(ValueError):
    """An error in what the user asked for; the command prints its message and exits with status 2."""


@contextlib.contextmanager
def user_input():
    """A `ValueError` or `OSError` raised while the user's arguments, files and data are checked becomes a `UsageError`."""
    try:
        yield
    except (ValueError, OSError) as error:
        raise UsageError(str(error).split("\n")[0]) from error


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
