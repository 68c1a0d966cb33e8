"""A group straddling two processes gets the same bonus and weights as in one process (torchrun, gloo, CPU)."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

SCRIPT = Path(__file__).with_name("distributed_scoring.py")


def run(command, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    run([sys.executable, str(SCRIPT), str(one)], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run([*torchrun, str(SCRIPT), str(two)], tmp_path)
    single, double = json.loads(one.read_text()), json.loads(two.read_text())

    assert (single["world_size"], double["world_size"]) == (1, 2)
    assert single["correct"] == double["correct"] == [1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1]
    # The encoder batches rows differently in each layout, so equality holds to float rounding.
    for key in ("bonus", "weights", "advantages"):
        assert single[key] == pytest.approx(double[key], abs=1e-5), key
    # The straddling group B (rows 4-7) has distinct, non-trivial weights, so the comparison is not vacuous.
    weights_b = double["weights"][4:8]
    assert sum(weights_b) == pytest.approx(1.0, abs=1e-5) and weights_b[3] == 0.0
    assert len({round(w, 4) for w in weights_b[:3]}) == 3
    assert all(b > 0 for b, c in zip(double["bonus"], double["correct"], strict=True) if c)
    # Group C is all correct with distinct solutions: plain GRPO gives it zero advantages, DSDR ranks its members.
    advantages_c = double["advantages"][8:12]
    assert all(abs(a) > 0.01 for a in advantages_c) and len({round(a, 3) for a in advantages_c}) == 4
    assert statistics.stdev(advantages_c) == pytest.approx(1.0, abs=1e-3)  # a full z-score: ε = 1e-6 << std
    for result in (single, double):
        assert result["train_steps"] == 2 and result["train_metrics_finite"] and result["train_has_dsdr_metrics"]
