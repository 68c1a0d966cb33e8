"""A group straddling two processes gets the same bonus and weights as in one process (torchrun, gloo, CPU), and a
signal to `dsdr-trl train` stops every process of its launch."""

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
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


ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_command_stops_every_process_of_its_launch(tmp_path, signum):
    # What a container runtime or a scheduler does: signal the one `dsdr-trl` process. Its launch runs in that process
    # (accelerate's launch_command), so the signal reaches the launcher, which stops both training processes.
    import psutil

    output_dir = tmp_path / "out"
    argv = ["train", "--config", "configs/tiny/dsdr.yaml", "--accelerate_config", "ddp", "--num_processes", "2"]
    argv += ["--main_process_port", str(free_port()), "--max_steps", "100000", "--passk_eval_dataset", ""]
    # 2 prompts x 4 generations of 16 tokens per process and step: the processes log a loss within seconds.
    argv += ["--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "16"]
    argv += ["--output_dir", str(output_dir)]
    log = tmp_path / "log.txt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        command = subprocess.Popen(
            [sys.executable, "-m", "dsdr_trl", *argv], cwd=ROOT, env=env, stdout=out, stderr=out
        )

    def of_the_run() -> list:
        return [p for p in psutil.process_iter(["cmdline"]) if str(output_dir) in " ".join(p.info["cmdline"] or [])]

    try:
        deadline = time.monotonic() + 600
        while "'loss'" not in log.read_text():  # both processes are training
            assert command.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        assert len(of_the_run()) >= 3  # this command and its two training processes
        command.send_signal(signum)
        time.sleep(10)
        left = of_the_run()
        assert command.poll() == 128 + signum, log.read_text()[-3000:]
        assert left == [], [p.info["cmdline"] for p in left]
    finally:
        for process in [command, *of_the_run()]:
            with contextlib.suppress(Exception):
                process.kill()
