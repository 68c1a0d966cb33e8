"""`dsdr-trl demo` end to end with tiny settings: the report's shape, both methods' training signals, determinism."""

import json

import pytest

from dsdr_trl.cli import main as cli_main
from dsdr_trl.toy.demo import DemoArguments, make_mode_monitor
from dsdr_trl.toy.task import Problem, worked_solution

# Two RL steps of 2 problems × G = 4 and 4 held-out problems × 4 samples: every stage of the demo runs, in seconds.
TINY = [
    "--max_steps", "2", "--prompts_per_step", "2", "--num_generations", "4",
    "--num_eval_problems", "4", "--num_samples", "4",
]  # fmt: skip


def _numbers(report: dict) -> dict:
    """Everything in report.json that must not depend on the run: all but the wall times and the output path."""
    methods = {name: {k: v for k, v in m.items() if k != "wall_seconds"} for name, m in report["methods"].items()}
    return {"seeds": report["seeds"], "methods": methods}


def _console_lines(text: str) -> list[str]:
    """The lines a terminal keeps: a progress bar redrawn in place (after a carriage return) is one line."""
    return text.rstrip("\n").split("\n")  # str.splitlines would also split at each carriage return


@pytest.mark.slow
def test_tiny_demo_writes_report_and_is_deterministic(tmp_path, capfd):
    first, second = tmp_path / "first", tmp_path / "second"
    assert cli_main(["demo", *TINY, "--output_dir", str(first)]) == 0
    out, err = capfd.readouterr()
    # One line per stage, one bar per training run and the table: as many lines as `make demo`'s 100 steps print.
    assert len(_console_lines(out + err)) < 30, out + err
    assert "'dsdr/frac_zero_std_before'" not in out + err and "seed 0: DSDR" in err
    assert cli_main(["demo", *TINY, "--output_dir", str(second), "--plots", "false", "--verbose"]) == 0
    verbose = capfd.readouterr()
    assert "'dsdr/frac_zero_std_before'" in verbose.out + verbose.err  # TRL's dictionary per step is back

    report = json.loads((first / "report.json").read_text())
    assert report["seeds"] == [0] and report["wall_seconds"] > 0
    assert set(report["methods"]) == {"warmstart", "grpo", "dsdr"}
    for method in report["methods"].values():
        assert list(method["pass@k"]) == ["1", "2", "3", "4"]
        assert 0.0 <= method["pass@k"]["1"] <= method["pass@k"]["4"] <= 1.0
        assert method["avg@4"] == pytest.approx(method["pass@k"]["1"])  # with n = 4 samples, pass@1 is avg@4
        assert method["distinct_correct"] is not None
        assert method["seeds"] == [0] and 0 < method["wall_seconds"] <= report["wall_seconds"]
    assert (first / "pass_at_k.png").stat().st_size > 0 and (first / "training_curves.png").stat().st_size > 0
    assert "| GRPO |" in (first / "report.md").read_text()

    # Only DSDR shapes rewards; the warm start solves enough problems that some group has a correct completion.
    grpo_log = json.loads((first / "runs" / "grpo-seed0" / "log_history.json").read_text())
    dsdr_log = json.loads((first / "runs" / "dsdr-seed0" / "log_history.json").read_text())
    assert all(entry["dsdr/bonus_max"] == 0 for entry in grpo_log)
    assert any(entry["dsdr/bonus_max"] > 0 for entry in dsdr_log)
    assert all("toy/modes_per_group" in entry for entry in grpo_log + dsdr_log)

    # TRL's full per-step metrics are in the run's files: one JSON line per logged step, and trainer_state.json.
    for method in ("grpo", "dsdr"):
        run = first / "runs" / f"{method}-seed0"
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [entry["step"] for entry in lines if "reward" in entry] == [1, 2]
        assert all("dsdr/frac_zero_std_after" in entry and "loss" in entry for entry in lines if "reward" in entry)
        assert lines == json.loads((run / "trainer_state.json").read_text())["log_history"]

    assert _numbers(json.loads((second / "report.json").read_text())) == _numbers(report)

    # The report can be re-rendered from the run's JSON and logs alone.
    (first / "report.md").unlink()
    assert cli_main(["demo", "--rebuild_report", "--output_dir", str(first)]) == 0
    assert "| DSDR |" in (first / "report.md").read_text()


def test_mode_monitor_counts_strategies_among_correct_completions():
    logged = {}
    monitor = make_mode_monitor(group_size=3, strategies=("split", "round", "carry"))
    a, b = Problem(47, 6), Problem(23, 4)
    completions = [worked_solution(a, "split"), worked_solution(a, "carry"), "$7*6=42$ \\boxed{1}"]
    completions += [worked_solution(b, "round")] * 2 + ["junk"]
    rewards = monitor(completions, [a.answer] * 3 + [b.answer] * 3, log_metric=logged.__setitem__)
    assert rewards == [0.0] * 6  # it must never change the reward
    assert logged["toy/modes_per_group"] == pytest.approx((2 + 1) / 2)
    assert logged["toy/share_round"] == pytest.approx(0.5)
    assert logged["toy/share_split"] == logged["toy/share_carry"] == pytest.approx(0.25)
    assert logged["toy/frac_all_correct"] == 0.0
    monitor([worked_solution(a, "split")] * 3 + ["junk"] * 3, [a.answer] * 6, log_metric=logged.__setitem__)
    assert logged["toy/frac_all_correct"] == pytest.approx(0.5)


def test_demo_options_are_parsed_like_train_and_validated(tmp_path, capsys):
    from dsdr_trl.scripts.demo import make_parser

    (settings,) = make_parser().parse_args_and_config(["--seeds", "4", "7", "--max_steps", "3"])
    assert settings.seeds == [4, 7] and settings.max_steps == 3
    config = tmp_path / "demo.yaml"
    config.write_text("seeds: [1, 2]\nlearning_rate: 1.0e-4\n")
    (settings,) = make_parser().parse_args_and_config(["--config", str(config), "--learning_rate", "5e-5"])
    assert settings.seeds == [1, 2] and settings.learning_rate == 5e-5  # the flag wins over the file
    with pytest.raises(ValueError, match="num_generations"):
        DemoArguments(num_generations=1)
    assert cli_main(["demo", "--num_eval_problems", "1000"]) == 2
    assert "--num_eval_problems must lie in [1, 96]" in capsys.readouterr().err


def test_regime_sets_defaults_that_flags_override(tmp_path, monkeypatch, capsys):
    from dsdr_trl.scripts.demo import parse_args
    from dsdr_trl.toy import demo

    monkeypatch.setitem(demo.REGIMES, "test-regime", {"strategies": "balanced", "max_steps": 7})
    settings = parse_args(["--regime", "test-regime"])
    assert (settings.strategies, settings.max_steps) == ("balanced", 7)
    settings = parse_args(["--regime", "test-regime", "--max_steps", "3"])
    assert (settings.strategies, settings.max_steps) == ("balanced", 3)
    config = tmp_path / "demo.yaml"
    config.write_text("regime: test-regime\n")
    assert cli_main(["demo", "--config", str(config)]) == 2
    assert "give --regime on the command line" in capsys.readouterr().err
    assert cli_main(["demo", "--regime", "no-such-regime"]) == 2
    assert "--regime must be one of" in capsys.readouterr().err


def test_training_bar_shows_reward_dead_groups_and_the_leading_strategy():
    from dsdr_trl.toy.console import TrainingBar

    bar = TrainingBar("seed 0: DSDR")
    for reward, after, carry in ((0.25, 0.5, 0.6), (0.75, 0.25, 0.8)):
        shares = {"toy/share_split": 0.1, "toy/share_round": 0.9 - carry, "toy/share_carry3": carry}
        bar.recent.append(
            {"reward": reward, "dsdr/frac_zero_std_before": 0.5, "dsdr/frac_zero_std_after": after, **shares}
        )
    assert bar.figures() == "reward 0.50 · dead groups 0.50 → 0.38 · carry3 70 %"


def test_demo_without_matplotlib_says_how_to_install_it(monkeypatch, capsys):
    import sys

    from dsdr_trl.toy.console import quiet_run

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    seen = []
    run = quiet_run(lambda settings: seen.append(settings.plots))
    run(DemoArguments(verbose=True))
    assert seen == [False]
    assert (
        capsys.readouterr().out.strip()
        == '[demo] matplotlib is not installed, so no plots are drawn: pip install "dsdr-trl[demo]"'
    )


def test_minority_rescue_regime_runs_by_name():
    from dsdr_trl.scripts.demo import parse_args

    settings = parse_args(["--regime", "minority-rescue"])
    assert settings.task_variant == "minority-rescue" and settings.sft_includes_rl
    assert settings.sft_mix == {"split": 15, "carry3": 4, "round": 1}
    assert settings.warmstart_name.startswith("minority-rescue-balanced-")
    splits = settings.splits()
    assert len(splits.held_out) == 45 and splits.guard and all(p.b in (7, 8, 9) for p in splits.held_out)
    with pytest.raises(ValueError, match="minority-rescue needs"):
        DemoArguments(task_variant="minority-rescue", strategies="original")
