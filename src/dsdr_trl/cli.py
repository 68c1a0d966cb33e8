"""The `dsdr-trl` command: `dsdr-trl {train,eval,demo,recipes} [--help]` (also `python -m dsdr_trl`).

Each subcommand is a module with a `main(argv) -> int`, imported only when it runs, so `dsdr-trl --help` is fast.
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
USAGE = "usage: dsdr-trl <command> [options]\n\nDSDR (Dual-Scale Diversity Regularization, arXiv 2602.19895) on TRL's "
USAGE += "GRPOTrainer.\n\ncommands:\n" + "".join(f"  {name:<8}{summary}\n" for name, (_, summary) in COMMANDS.items())
USAGE += "\nRun `dsdr-trl <command> --help` for the options of a command."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--version"):
        print(f"dsdr-trl {__version__}" if argv[:1] == ["--version"] else USAGE)
        return 0
    if argv[0] not in COMMANDS:
        print(f"dsdr-trl: error: unknown command '{argv[0]}'; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    return run_command(argv[0], importlib.import_module(COMMANDS[argv[0]][0]).main, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
