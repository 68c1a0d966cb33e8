"""Tests for the hard time limit on a pool of worker processes. The helpers below are top-level so the workers can
import them by this module's name (pytest puts the tests directory on `sys.path`, and the workers inherit it)."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from dsdr_trl import _time_limit
from dsdr_trl._time_limit import map_with_time_limit


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


# A training process stand-in: starts the pool and has every worker take an item that never ends.
HANGING_PARENT = """
import sys
sys.path.insert(0, sys.argv[1])
from dsdr_trl._time_limit import map_with_time_limit, worker_count
from test_time_limit import report_then_hang
print(worker_count(), flush=True)
map_with_time_limit(report_then_hang, [sys.argv[2]] * worker_count(), seconds=600.0, default=None)
"""


def test_results_in_order_and_workers_reused():
    assert map_with_time_limit(square, list(range(50)), seconds=5.0, default=-1) == [x * x for x in range(50)]
    first = map_with_time_limit(worker_pid, list(range(20)), seconds=5.0, default=-1)
    second = map_with_time_limit(worker_pid, list(range(20)), seconds=5.0, default=-1)
    # No process per item or per call: the pool's workers serve both calls.
    assert len(set(first) | set(second)) <= _time_limit.worker_count()
    assert os.getpid() not in first + second and -1 not in first + second


def test_empty_input_and_invalid_limit():
    assert map_with_time_limit(square, [], seconds=1.0, default=None) == []
    with pytest.raises(ValueError, match="positive"):
        map_with_time_limit(square, [1], seconds=0, default=None)


def test_timeout_gets_default_and_later_items_still_run():
    stats: dict[str, int] = {}
    start = time.monotonic()
    results = map_with_time_limit(
        sleep_then_echo, [0.0, 30.0, 0.01, 30.0, 0.02], seconds=0.5, default=-1.0, stats=stats
    )
    elapsed = time.monotonic() - start
    assert results == [0.0, -1.0, 0.01, -1.0, 0.02]
    assert stats == {"timeouts": 2, "errors": 0}
    # Two overruns at 0.5 s each plus worker restarts; far below the 30 s sleeps.
    assert elapsed < 10.0


def test_exception_and_unpicklable_result_get_default():
    stats = {"timeouts": 0, "errors": 5}
    results = map_with_time_limit(fail_on_negative, [1, -1, 2], seconds=5.0, default=0, stats=stats)
    assert results == [1, 0, 2]
    assert stats == {"timeouts": 0, "errors": 6}
    assert map_with_time_limit(return_unpicklable, [0], seconds=5.0, default="fallback") == ["fallback"]


def test_worker_crash_gets_default_and_recovers():
    stats: dict[str, int] = {}
    assert map_with_time_limit(die_on_item, [0, 1, 2], seconds=5.0, default=-1, stats=stats) == [0, -1, 2]
    assert stats["errors"] == 1
    assert map_with_time_limit(square, [3], seconds=5.0, default=-1) == [9]


def test_workers_killed_between_calls_are_replaced():
    pids = set(map_with_time_limit(worker_pid, list(range(20)), seconds=5.0, default=-1))
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    new_pids = set(map_with_time_limit(worker_pid, list(range(20)), seconds=5.0, default=-1))
    assert new_pids and not new_pids & (pids | {-1})


def test_c_level_hang_is_bounded():
    stats: dict[str, int] = {}
    start = time.monotonic()
    results = map_with_time_limit(huge_power, [10**10, 3], seconds=0.5, default=None, stats=stats)
    assert time.monotonic() - start < 5.0
    assert results == [None, pow(10, 3) % 7]
    assert stats["timeouts"] == 1


def test_memory_blowup_gets_default():
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("the worker memory cap is Linux-only")
    assert map_with_time_limit(allocate_gigabytes, [8], seconds=5.0, default=-1) == [-1]


def test_works_from_non_main_threads():
    outputs: dict[int, list] = {}

    def call(key: int) -> None:
        outputs[key] = map_with_time_limit(sleep_then_echo, [0.0, 30.0, key / 100], seconds=0.3, default=-1.0)

    threads = [threading.Thread(target=call, args=(key,)) for key in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outputs == {key: [0.0, -1.0, key / 100] for key in range(3)}


def test_unpicklable_function_raises_type_error():
    def local_function(x):
        return x

    with pytest.raises(TypeError, match="picklable"):
        map_with_time_limit(local_function, [1], seconds=5.0, default=None)


def test_function_missing_in_worker_raises_and_pool_recovers(monkeypatch):
    # Picklable here (its module is registered in this process only) but not importable by the worker.
    module = types.ModuleType("module_only_in_parent")
    module.square = square
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(square, "__module__", module.__name__)
    with pytest.raises(RuntimeError, match="could not load `fn`"):
        map_with_time_limit(square, [1], seconds=5.0, default=None)
    monkeypatch.undo()
    assert map_with_time_limit(square, [2], seconds=5.0, default=-1) == [4]


def test_unpicklable_item_raises_type_error():
    with pytest.raises(TypeError, match="picklable"):
        map_with_time_limit(square, [1, threading.Lock()], seconds=5.0, default=None)


# A process that forks a child which uses the pool too and exits normally (running its exit handlers).
FORKING_PARENT = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from dsdr_trl._time_limit import map_with_time_limit
from test_time_limit import square
def workers():
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and b"pebble_pool_worker" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except (OSError, ValueError):
            pass
    return sorted(found)
map_with_time_limit(square, [1], seconds=30.0, default=None)
before = workers()
child = os.fork()
if child == 0:
    map_with_time_limit(square, [2], seconds=30.0, default=None)
    print(json.dumps({"child": workers()}), flush=True)
    sys.exit(0)
os.waitpid(child, 0)
time.sleep(0.5)
print(json.dumps({"before": before, "after": workers()}), flush=True)
"""


def test_forked_child_gets_its_own_pool_and_leaves_the_parents_alone():
    if not sys.platform.startswith("linux"):
        pytest.skip("the script finds the workers in /proc")
    tests_dir = str(Path(__file__).resolve().parent)
    output = subprocess.run(  # noqa: S603 - this interpreter with a constant script
        [sys.executable, "-c", FORKING_PARENT, tests_dir], capture_output=True, text=True, timeout=300, check=True
    )
    pids = {key: set(value) for line in output.stdout.splitlines() for key, value in json.loads(line).items()}
    assert pids["child"] and not pids["child"] & pids["before"]  # the child started workers of its own
    assert pids["before"] and pids["after"] == pids["before"]  # and its exit left the parent's workers running
    assert "Traceback" not in output.stderr


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not yet reaped by init, does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_die_with_a_killed_parent_mid_item(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("workers die with their parent through PR_SET_PDEATHSIG, which is Linux-only")
    tests_dir = str(Path(__file__).resolve().parent)
    parent = subprocess.Popen(  # noqa: S603 - this interpreter with a constant script
        [sys.executable, "-c", HANGING_PARENT, tests_dir, str(tmp_path)], stdout=subprocess.PIPE, text=True
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


def test_pool_started_from_a_thread_that_exits_keeps_its_workers():
    # PR_SET_PDEATHSIG fires when the thread that started a worker exits; the pool starts its workers from its own.
    _time_limit.shutdown_pool()
    pids: list[int] = []
    thread = threading.Thread(target=lambda: pids.extend(map_with_time_limit(worker_pid, [0], 5.0, -1)))
    thread.start()
    thread.join()
    time.sleep(0.5)
    assert pids and alive(pids[0])
    assert map_with_time_limit(worker_pid, list(range(20)), seconds=5.0, default=-1).count(-1) == 0


def test_workers_do_not_run_the_parents_main_script(tmp_path):
    # A training script without a `__main__` guard: a "spawn" worker would run it again, training included.
    script = tmp_path / "train.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "print('top level ran', flush=True)\n"
        "from dsdr_trl._time_limit import map_with_time_limit\n"
        "from test_time_limit import square\n"
        "print(map_with_time_limit(square, list(range(8)), seconds=30.0, default=None), flush=True)\n"
    )
    output = subprocess.run(  # noqa: S603 - this interpreter with the script written above
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    assert output.splitlines() == ["top level ran", str([x * x for x in range(8)])]


def test_worker_count_divides_the_usable_cores_among_the_ranks(monkeypatch):
    monkeypatch.delenv(_time_limit.WORKERS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert _time_limit.worker_count() == 64
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert _time_limit.worker_count() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "128")
    assert _time_limit.worker_count() == 1
    monkeypatch.setenv(_time_limit.WORKERS_ENV, "3")
    assert _time_limit.worker_count() == 3
    monkeypatch.setattr(_time_limit, "WORKERS", 5)
    assert _time_limit.worker_count() == 5
    monkeypatch.setattr(_time_limit, "WORKERS", None)
    monkeypatch.setenv(_time_limit.WORKERS_ENV, "zero")
    with pytest.raises(ValueError, match="DSDR_VERIFIER_WORKERS must be a positive integer"):
        _time_limit.worker_count()
