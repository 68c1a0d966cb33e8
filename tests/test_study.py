"""The regime study (experiments/study.py, outside the package): hand-made job records give the right paired
differences, and the tiny grid runs end to end, writes its summary and plots, and resumes without rerunning finished
jobs."""

import json
import sys
from pathlib import Path

import pytest

from dsdr_trl.toy.demo import DemoArguments

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from regenerate_warmstart import main as regenerate_warmstart  # noqa: E402
from study import DSDR_VARIANTS, StudyArguments, summarize_study  # noqa: E402
from study import main as study_main  # noqa: E402


def record(method: str, seed: int, pass1: float, pass16: float, distinct: float) -> dict:
    return {
        "cell": "c",
        "method": method,
        "seed": seed,
        "settings": {"seeds": [seed], "output_dir": "x", "max_steps": 1},
        "frac_all_correct_start": 0.25,
        "train_accuracy_start": 0.5,
        "dead_groups_before": 0.5,
        "dead_groups_after": 0.25 if method != "grpo" else 0.5,
        "eval": {
            "pass@k": {"1": pass1, "16": pass16},
            "distinct_correct": distinct,
            "strategy_share": {"split": 0.5, "other": 0.5},
        },
    }


def test_differences_are_paired_by_seed():
    records = [
        record("grpo", 1, 0.20, 0.50, 1.0),
        record("grpo", 2, 0.30, 0.60, 1.2),
        record("grpo", 3, 0.40, 0.40, 1.1),
        record("dsdr", 1, 0.21, 0.60, 1.5),
        record("dsdr", 2, 0.29, 0.66, 1.4),
        record("dsdr", 3, 0.40, 0.50, 1.6),
    ]
    summary = summarize_study(records, StudyArguments(), DemoArguments(seeds=[1, 2, 3]))
    cell = summary["cells"]["c"]
    pass16 = cell["differences"]["dsdr"]["pass@16"]
    # Per-seed differences 10, 6, 10 points: mean 8.67, stdev 2.31, standard error 2.31 / sqrt(3) = 1.33.
    assert pass16["mean"] == pytest.approx(26 / 3)
    assert pass16["standard_error"] == pytest.approx(2.3094 / 3**0.5, rel=1e-3)
    assert pass16["exceeds_2se"] is True
    pass1 = cell["differences"]["dsdr"]["pass@1"]  # +1, -1, 0 points: no difference
    assert pass1["mean"] == pytest.approx(0.0, abs=1e-9) and pass1["exceeds_2se"] is False
    assert cell["differences"]["dsdr"]["distinct_correct"]["mean"] == pytest.approx(0.4)
    assert cell["methods"]["dsdr"]["dead_groups_after"] == 0.25 and cell["frac_all_correct_start"] == 0.25


@pytest.mark.slow
def test_tiny_study_runs_every_part_and_resumes(tmp_path):
    study_dir, cache = tmp_path / "study", tmp_path / "warmstarts"
    argv = ["--study_grid", "tiny", "--jobs", "1", "--study_dir", str(study_dir)]
    argv += ["--warmstart_cache", str(cache)]
    assert study_main(argv) == 0
    summary = json.loads((study_dir / "study.json").read_text())
    assert set(summary["cells"]) == {"base", "balanced"}
    assert set(summary["cells"]["base"]["differences"]) == set(DSDR_VARIANTS)
    assert set(summary["cells"]["balanced"]["differences"]) == {"dsdr"}
    for cell in summary["cells"].values():
        for differences in cell["differences"].values():
            assert set(differences) == {"seeds", "pass@1", "pass@16", "distinct_correct"} and differences["seeds"] == [
                0
            ]
            assert differences["pass@1"]["standard_error"] is None  # one seed: no standard error
        assert 0.0 <= cell["frac_all_correct_start"] <= 1.0
    # The balanced cell trained its own warm start into the cache; its correct samples use the balanced strategies.
    assert (cache / "balanced-sft2" / "model.safetensors").is_file()
    shares = summary["cells"]["balanced"]["methods"]["grpo"]["strategy_share"]
    assert set(shares) == {"split", "round", "carry3", "other"}
    assert (study_dir / "study.png").stat().st_size > 0 and "| base | dsdr_tau0 |" in (
        study_dir / "study.md"
    ).read_text()
    jobs = sorted(path.name for path in (study_dir / "jobs").glob("*.json"))
    assert len(jobs) == 1 + len(DSDR_VARIANTS) + 2

    stamps = {path.name: path.stat().st_mtime_ns for path in (study_dir / "jobs").glob("*.json")}
    assert study_main(argv) == 0  # resumes: every job is done, so none runs again
    assert {path.name: path.stat().st_mtime_ns for path in (study_dir / "jobs").glob("*.json")} == stamps
    again = json.loads((study_dir / "study.json").read_text())
    assert again["cells"] == summary["cells"]


def test_regenerate_warmstart_refuses_the_installed_package(capsys):
    from dsdr_trl.toy import WARMSTART_DIR

    assert regenerate_warmstart([str(WARMSTART_DIR)]) == 2
    assert "outside the installed package" in capsys.readouterr().err
