"""The `dsdr-trl` command: `dsdr-trl {train,eval,demo,recipes} [--help]` (also `python -m dsdr_trl`).

Each subcommand lives in its own module with a `main(argv) -> int`; this file only dispatches, so `dsdr-trl --help`
imports nothing heavy. Errors a user can fix (a missing file, an unknown field, a bad value) are printed as one
`dsdr-trl <command>: error: ...` line with exit status 2, never as a traceback; set `DSDR_TRL_DEBUG=1` to see the
traceback anyway.
"""

from __future__ import annotations

import importlib
import sys

from . import __version__
from .scripts.common import run_command

COMMANDS = {
    "train": ("dsdr_trl.scripts.train", "Train with DSDR (or a GRPO/DAPO baseline) from a YAML recipe."),
    "eval": ("dsdr_trl.scripts.evaluate", "Sample N completions per problem and report pass@k, avg@N and diversity."),
    "demo": ("dsdr_trl.scripts.demo", "DSDR against GRPO on an embedded toy task, on CPU, in minutes."),
    "recipes": ("dsdr_trl.scripts.recipes", "List the shipped recipes (paper setups) and accelerate configs."),
}


def _usage() -> str:
    lines = [
        "usage: dsdr-trl <command> [options]",
        "",
        "DSDR (Dual-Scale Diversity Regularization, arXiv 2602.19895) on TRL's GRPOTrainer.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<8}{summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run `dsdr-trl <command> --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(f"dsdr-trl {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"dsdr-trl: error: unknown command '{command}'; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    return run_command(command, importlib.import_module(COMMANDS[command][0]).main, rest)


if __name__ == "__main__":
    sys.exit(main())
