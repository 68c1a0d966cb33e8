"""What the `dsdr-trl` subcommands share: the error a user can fix, and running a subcommand so that such an error is
one line and exit status 2, never a traceback (set `DSDR_TRL_DEBUG=1` to see the traceback anyway)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["UsageError", "check_config_path", "run_command"]


class UsageError(Exception):
    """An error in what the user asked for; the command prints its message and exits with status 2."""


def check_config_path(argv: list[str], resolve: Callable[[str], str] | None = None) -> None:
    """Fails with one clear line when `--config` lacks its value or names a missing file (`resolve` maps names)."""
    if "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            raise UsageError("--config needs a YAML file path.")
        if resolve is not None:
            resolve(argv[index + 1])
            return
        path = Path(argv[index + 1])
        if not path.is_file():
            raise FileNotFoundError(f"Config file '{path}' does not exist.")


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
