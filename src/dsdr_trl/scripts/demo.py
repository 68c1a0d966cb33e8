"""`dsdr-trl demo`: GRPO against DSDR on the embedded toy task, on CPU, in minutes (see `dsdr_trl.toy.demo`).

    dsdr-trl demo                                # one seed, writes outputs/demo/{report.md,report.json,*.png}
    dsdr-trl demo --seeds 0 1 2                  # three seeds; the report gives mean ± std
    dsdr-trl demo --rebuild_report               # rewrite report.md and plots from a finished run's JSON and logs

Every field of [`~dsdr_trl.toy.demo.DemoArguments`] is a flag (`--help` lists them) or a key of a `--config` YAML. The
regime study and the script that retrains the shipped warm starts live in the repository's `experiments/`.
"""

from __future__ import annotations

import os
import sys

from .arguments import make_parser as make_trl_parser
from .arguments import parse, pop_config
from .common import run_command


def make_parser():
    from ..toy.demo import DemoArguments

    return make_trl_parser((DemoArguments,), "dsdr-trl demo")


def parse_args(argv: list[str]):
    """The demo's arguments; a `--regime` sets defaults first, so that explicit flags win over it."""
    from ..toy.demo import DEFAULT_REGIME, regime_settings

    config, _ = pop_config(argv := list(argv))
    regime = ("--regime", lambda name: regime_settings(name or DEFAULT_REGIME))
    (settings,) = parse(make_parser(), argv, config, "demo", preset=regime)
    return settings


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = parse_args(list(sys.argv[1:] if argv is None else argv))

    from ..toy.demo import run_demo
    from ..toy.report import rebuild_report, results_table

    if settings.rebuild_report:
        print(results_table(rebuild_report(settings.output_dir)))
    else:
        report = run_demo(settings)
        print(
            f"\n{results_table(report)}\nWrote {settings.output_dir}/report.md, report.json and plots in "
            f"{report['wall_seconds'] / 60:.1f} min."
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_command("demo", main))
