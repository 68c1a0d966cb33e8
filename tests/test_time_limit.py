"""The verifier's worker processes, through what they do: the time limit, hostile items, the parent's death, threads,
scripts and an unusable pool. The helpers are top-level so that the workers can import them by this module's name
(pytest puts the tests directory on `sys.path`, and the workers inherit it)."""

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dsdr_trl import _time_limit
from dsdr_trl._time_limit import run_with_time_limit, verifier_workers

TESTS = str(Path(__file__).resolve().parent)


def square(x: int) -> int:
    return x * x


def sleep_then_echo(x: float) -> float:
    time.sleep(x)
    return x


def fail_on_negative(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x


def huge_power(exponent: int) -> int:
    # A single C-level bignum operation: no Python bytecode runs, so no signal handler could interrupt it.
    return pow(10, exponent) % 7


def worker_pid(_: object) -> int:
    return os.getpid()


def die_on_item(x: int) -> int:
    if x == 1:
        os._exit(3)
    return x


def return_unpicklable(_: object) -> object:
    return threading.Lock()


def allocate_gigabytes(n: int) -> int:
    return len(bytearray(n * 1024**3))


def report_then_hang(directory: str) -> None:
    # Announces which worker took the item, then backtracks in the C regex engine for longer than any test runs.
    Path(directory, str(os.getpid())).touch()
    re.match(r"(a+)+$", "a" * 64 + "b")


def values(outcomes):
    return [outcome.value if outcome.status == "ok" else outcome.status for outcome in outcomes]


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def pool_workers(parent: int) -> list[int]:
    """PIDs of the verifier workers of `parent` (pebble names them `pebble_pool_worker`)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                if b"pebble_pool_worker" in (stat.parent / "cmdline").read_bytes():
                    found.append(int(stat.parent.name))
        except (OSError, ValueError):
            pass
    return sorted(found)


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG")


def test_results_in_order_on_reused_workers():
    assert values(run_with_time_limit(square, list(range(50)), 5.0)) == [x * x for x in range(50)]
    first = values(run_with_time_limit(worker_pid, list(range(20)), 5.0))
    second = values(run_with_time_limit(worker_pid, list(range(20)), 5.0))
    # No process per item or per call: the pool's workers serve both calls, none of them this process.
    assert len(set(first) | set(second)) <= verifier_workers()
    assert all(isinstance(pid, int) and pid != os.getpid() for pid in first + second)
    assert run_with_time_limit(square, [], 1.0) == []
    with pytest.raises(ValueError, match="positive"):
        run_with_time_limit(square, [1], 0)


def test_overruns_are_cut_at_the_limit_and_later_items_still_run():
    start = time.monotonic()
    outcomes = run_with_time_limit(sleep_then_echo, [0.0, 30.0, 0.01, 30.0, 0.02], 0.5)
    assert values(outcomes) == [0.0, "timeout", 0.01, "timeout", 0.02]
    # Two overruns at 0.5 s each plus worker restarts; far below the 30 s sleeps.
    assert time.monotonic() - start < 15.0
    start = time.monotonic()
    assert values(run_with_time_limit(huge_power, [10**10, 3], 0.5)) == ["timeout", pow(10, 3) % 7]
    assert time.monotonic() - start < 15.0  # the power alone runs for minutes in C code


def test_hostile_items_fail_alone_and_the_pool_goes_on():
    outcomes = run_with_time_limit(fail_on_negative, [1, -1, 2], 5.0)
    assert values(outcomes) == [1, "error", 2] and isinstance(outcomes[1].value, ValueError)
    assert values(run_with_time_limit(return_unpicklable, [0], 5.0)) == ["error"]
    assert values(run_with_time_limit(die_on_item, [0, 1, 2], 5.0)) == [0, "error", 2]
    if sys.platform.startswith("linux"):  # the memory cap
        assert values(run_with_time_limit(allocate_gigabytes, [8], 5.0)) == ["error"]
    assert values(run_with_time_limit(square, [3], 5.0)) == [9]


def test_works_from_non_main_threads():
    outputs: dict[int, list] = {}

    def call(key: int) -> None:
        outputs[key] = values(run_with_time_limit(sleep_then_echo, [0.0, 30.0, key / 100], 0.3))

    threads = [threading.Thread(target=call, args=(key,)) for key in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outputs == {key: [0.0, "timeout", key / 100] for key in range(3)}


@linux_only
def test_workers_killed_between_calls_are_replaced():
    pids = set(values(run_with_time_limit(worker_pid, list(range(20)), 5.0)))
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # Between calls: once the pool has seen them die (it reaps them). A call racing the kill itself gets `None` rows.
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    new_pids = set(values(run_with_time_limit(worker_pid, list(range(20)), 5.0)))
    assert new_pids and all(isinstance(pid, int) for pid in new_pids) and not new_pids & pids


def in_daemonic_process(queue) -> None:
    queue.put(run_with_time_limit(square, [2], 5.0)[0].status)


def test_a_pool_that_cannot_start_makes_its_items_unavailable():
    # multiprocessing lets no daemonic process start processes.
    queue = multiprocessing.get_context("spawn").Queue()
    process = multiprocessing.get_context("spawn").Process(target=in_daemonic_process, args=(queue,), daemon=True)
    process.start()
    assert queue.get(timeout=120) == "unavailable"
    process.join(timeout=30)


# A training process stand-in: starts the pool and has every worker take an item that never ends.
HANGING_PARENT = """
import sys
sys.path.insert(0, sys.argv[1])
from dsdr_trl._time_limit import run_with_time_limit, verifier_workers
from test_time_limit import report_then_hang
print(verifier_workers(), flush=True)
run_with_time_limit(report_then_hang, [sys.argv[2]] * verifier_workers(), 600.0)
"""


@linux_only
def test_workers_die_with_a_killed_parent_mid_item(tmp_path):
    parent = subprocess.Popen(  # noqa: S603 - this interpreter with a constant script
        [sys.executable, "-c", HANGING_PARENT, TESTS, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        workers = int(parent.stdout.readline())
        deadline = time.monotonic() + 120
        while len(list(tmp_path.iterdir())) < workers and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [int(path.name) for path in tmp_path.iterdir()]
        assert len(pids) == workers and all(alive(pid) for pid in pids)  # every worker is mid-item
    finally:
        parent.kill()
        parent.wait()
    # The kernel kills the workers as the parent dies; 3 s leaves room for a loaded machine.
    deadline = time.monotonic() + 3.0
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in pids if alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert survivors == []


@linux_only
def test_pool_started_from_a_thread_that_exits_keeps_its_workers():
    # PR_SET_PDEATHSIG fires when the thread that started a worker exits, not only the process.
    _time_limit.shutdown_pool()
    pids: list = []
    thread = threading.Thread(target=lambda: pids.extend(values(run_with_time_limit(worker_pid, [0], 5.0))))
    thread.start()
    thread.join()
    time.sleep(0.5)
    assert pids and alive(pids[0])
    assert "error" not in values(run_with_time_limit(worker_pid, list(range(20)), 5.0))


def test_workers_do_not_run_the_parents_main_script(tmp_path):
    # A training script without a `__main__` guard: a "spawn" worker would run it again, training included.
    script = tmp_path / "train.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {TESTS!r})\n"
        "print('top level ran', flush=True)\n"
        "from dsdr_trl._time_limit import run_with_time_limit\n"
        "from test_time_limit import square\n"
        "print([outcome.value for outcome in run_with_time_limit(square, list(range(8)), 30.0)], flush=True)\n"
    )
    output = subprocess.run(  # noqa: S603 - this interpreter with the script written above
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    assert output.splitlines() == ["top level ran", str([x * x for x in range(8)])]


# A process that forks a child which uses the pool too and exits normally (running its exit handlers).
FORKING_PARENT = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from dsdr_trl._time_limit import run_with_time_limit
from test_time_limit import pool_workers, square
run_with_time_limit(square, [1], 30.0)
before = pool_workers(os.getpid())
child = os.fork()
if child == 0:
    print(json.dumps({"child": [run_with_time_limit(square, [2], 30.0)[0].value, pool_workers(os.getpid())]}))
    sys.exit(0)
os.waitpid(child, 0)
time.sleep(0.5)
print(json.dumps({"parent": [run_with_time_limit(square, [3], 30.0)[0].value, before]}), flush=True)
"""


@linux_only
def test_forked_child_gets_its_own_pool_and_the_parents_goes_on():
    output = subprocess.run(  # noqa: S603 - this interpreter with a constant script
        [sys.executable, "-c", FORKING_PARENT, TESTS], capture_output=True, text=True, timeout=300, check=True
    )
    results = {key: value for line in output.stdout.splitlines() for key, value in json.loads(line).items()}
    (child_result, child_workers), (parent_result, parent_workers) = results["child"], results["parent"]
    assert child_result == 4 and child_workers and not set(child_workers) & set(parent_workers)
    assert parent_result == 9


def test_verifier_workers_divides_the_usable_cores_among_the_ranks(monkeypatch):
    monkeypatch.delenv(_time_limit.WORKERS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert verifier_workers() == 64
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert verifier_workers() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "128")
    assert verifier_workers() == 1
    monkeypatch.setenv(_time_limit.WORKERS_ENV, "3")
    assert verifier_workers() == 3
    monkeypatch.setattr(_time_limit, "WORKERS", 5)
    assert verifier_workers() == 5
    monkeypatch.setattr(_time_limit, "WORKERS", None)
    for bad in ("zero", "0", "-2", "1.5"):
        monkeypatch.setenv(_time_limit.WORKERS_ENV, bad)
        with pytest.raises(ValueError, match=r"DSDR_VERIFIER_WORKERS must be a positive integer.*unset it") as error:
            verifier_workers()
        assert "\n" not in str(error.value)


def test_the_verifier_module_loads_without_torch():
    # Every verifier worker imports the module of the function it runs: with torch (through TRL's config) each worker
    # start and each replacement of a killed worker would cost seconds.
    code = "import sys, dsdr_trl.rewards, dsdr_trl.sympy_forms; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
