"""`dsdr-trl demo`: GRPO against DSDR on the embedded toy task, on CPU, in minutes (see `dsdr_trl.toy.demo`).

    dsdr-trl demo                                # one seed, writes outputs/demo/{report.md,report.json,*.png}
    dsdr-trl demo --seeds 0 1 2                  # three seeds; the report gives mean ± std
    dsdr-trl demo --regenerate_warmstart DIR     # retrain the SFT warm start from its seed into DIR, then exit
    dsdr-trl demo --rebuild_report               # rewrite report.md and plots from a finished run's JSON and logs

Every field of [`~dsdr_trl.toy.demo.DemoArguments`] is a flag (`--help` lists them) or a key of a `--config` YAML. The
regime study that chose the default regime lives outside the package, in the repository's `experiments/`.
"""

from __future__ import annotations

import os
import sys

from .common import UsageError, check_config_path, run_command


def make_parser():
    from trl import TrlParser

    from ..toy.demo import DemoArguments

    return TrlParser((DemoArguments,), prog="dsdr-trl demo")


def parse_args(argv: list[str]):
    """The demo's arguments; a `--regime` sets defaults first, so that explicit flags win over it."""
    from ..toy.demo import DEFAULT_REGIME, regime_defaults

    parser = make_parser()
    parser.set_defaults(**regime_defaults(argv))
    (settings,) = parser.parse_args_and_config(argv)
    named = next((argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--regime"), settings.regime)
    if settings.regime != named or ("--regime" not in argv and settings.regime != DEFAULT_REGIME):
        raise UsageError("give --regime on the command line, not in the --config file, so that its settings apply.")
    return settings


def main(argv: list[str] | None = None) -> int:
    """Entry point of `dsdr-trl demo`; returns the exit status."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" not in argv and "--help" not in argv:
        check_config_path(argv)
    settings = parse_args(argv)

    from ..toy.demo import regenerate_warmstart, run_demo
    from ..toy.report import rebuild_report, results_table

    if settings.regenerate_warmstart:
        return regenerate_warmstart(settings)
    if settings.rebuild_report:
        print(results_table(rebuild_report(settings.output_dir)))
        return 0
    report = run_demo(settings)
    print()
    print(results_table(report))
    print(f"\nWrote {settings.output_dir}/report.md, report.json and plots in {report['wall_seconds'] / 60:.1f} min.")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("demo", main))
