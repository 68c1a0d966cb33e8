"""The verifier's worker processes: a hard wall-time limit per item, from any thread, whatever the item does.

math-verify's `signal.alarm` works only in the main thread and cannot interrupt C code (a huge integer power), so each
item is one `schedule(fn, args=(item,), timeout=seconds)` on a pebble `ProcessPool`, which kills an overrunning worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Literal, NamedTuple

from loky.backend import get_context
from pebble import ProcessPool

# Number of worker processes; `None`: the rule of [`verifier_workers`].
WORKERS: int | None = None
WORKERS_ENV = "DSDR_VERIFIER_WORKERS"
# A pool where no item finished for an item's limit plus this long (a worker's start fits in it) is given up.
STARTUP_TIMEOUT_SECONDS = 120.0
# Address space a worker may grow by after its set-up, so SymPy allocating gigabytes fails its item with `MemoryError`
# instead of calling the OOM killer. `None`: no cap (Linux only).
WORKER_MEMORY_HEADROOM_BYTES: int | None = 4 * 1024**3


class Outcome(NamedTuple):
    """`value`: the result (`"ok"`), the exception (`"error"`), `None` (`"timeout"`) or why the pool failed."""

    status: Literal["ok", "timeout", "error", "unavailable"]
    value: Any = None


def verifier_workers() -> int:
    """[`WORKERS`] if set, else `DSDR_VERIFIER_WORKERS`, else this process's cores divided by `LOCAL_WORLD_SIZE`, at
    least 1; `ValueError` (one line with the fix) for a setting that is not a positive integer."""
    name, value = (
        ("dsdr_trl._time_limit.WORKERS", WORKERS) if WORKERS is not None else (WORKERS_ENV, os.getenv(WORKERS_ENV))
    )
    if value in (None, ""):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // max(1, int(os.getenv("LOCAL_WORLD_SIZE") or 1)))
    if not str(value).strip().isdigit() or int(value) < 1:
        raise ValueError(
            f"{name} must be a positive integer, got {value!r}; set it to the number of verifier processes per rank "
            "(e.g. 2), or unset it for one per core."
        )
    return int(value)


def _init_worker(parent_pid: int, memory_headroom: int | None) -> None:
    # pebble's SIGTERM handler is Python code, which cannot run while an item is stuck in C code.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    import math_verify

    # The time limit is this pool's; math-verify would warn once that it runs without its own.
    math_verify.parser.TIMEOUT_WARNING_SHOWN = math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    math_verify.verify(math_verify.parse("$x+1$"), math_verify.parse("$1+x$"), timeout_seconds=None)
    if sys.platform.startswith("linux"):
        import resource

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the thread that started it exits
        if os.getppid() != parent_pid:  # the parent died before that took effect
            os._exit(1)
        if memory_headroom is not None:  # measured after the imports, which are not charged to the headroom
            cap = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE") + memory_headroom
            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))


_lock = threading.RLock()
_pool: ProcessPool | None = None
_pool_key = (0, 0)  # (process id, workers) that `_pool` was started for


def _own(pool: ProcessPool, started: threading.Event) -> None:
    # PR_SET_PDEATHSIG fires when the *thread* that started a worker exits, and pebble starts the first workers from the
    # thread that first uses the pool: this thread, which lives as long as the pool, so a short-lived caller's cannot.
    with contextlib.suppress(Exception):  # e.g. a daemonic process may not start processes; `schedule` reports it
        while pool.active:
            started.set()
            time.sleep(1.0)
    started.set()


def _current_pool() -> ProcessPool:
    global _pool, _pool_key
    key = (os.getpid(), verifier_workers())
    with _lock:
        if _pool is None or _pool_key != key or not _pool.active:
            shutdown_pool()
            # loky: a fresh interpreter, like "spawn", that does not rerun an unguarded `__main__` (it would train).
            initargs = (os.getpid(), WORKER_MEMORY_HEADROOM_BYTES)
            _pool = ProcessPool(key[1], initializer=_init_worker, initargs=initargs, context=get_context("loky"))
            _pool_key, started = key, threading.Event()
            threading.Thread(target=_own, args=(_pool, started), name="dsdr-verifier-pool", daemon=True).start()
            started.wait()
        return _pool


def shutdown_pool() -> None:
    """Stops the workers now (a busy one is killed); the next call starts a new pool."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
        if pool is not None and _pool_key[0] == os.getpid():  # a forked child leaves its parent's workers alone
            pool.stop()
            pool.join()


def _outcome(future: Future, stuck_after: float) -> Outcome:
    if future.cancel() or not future.done():
        return Outcome("unavailable", f"no worker finished an item within {stuck_after:g} s")
    error = future.exception()
    if error is None or isinstance(error, TimeoutError):
        return Outcome("ok", future.result()) if error is None else Outcome("timeout")
    # It raised, crashed its worker (`ProcessExpired`) or returned what cannot be pickled.
    return Outcome("unavailable" if isinstance(error, BrokenProcessPool) else "error", error)


def run_with_time_limit(fn: Callable[[Any], Any], items: Sequence[Any], seconds: float) -> list[Outcome]:
    """One [`Outcome`] per item of `fn(item)` (a top-level function) on the workers, each killed after `seconds` of
    wall time. `ValueError` only for a bad `seconds` or number of workers; a broken pool makes items `"unavailable"`."""
    if not seconds > 0:
        raise ValueError(f"`seconds` must be positive, got {seconds}.")
    verifier_workers()
    if not items:
        return []
    try:
        pool = _current_pool()
        futures = [pool.schedule(fn, args=(item,), timeout=seconds) for item in items]
    except Exception as error:  # the pool could not start, or broke since it was checked
        shutdown_pool()
        return [Outcome("unavailable", f"the pool could not run items ({error!r})")] * len(items)
    stuck_after, finished = seconds + STARTUP_TIMEOUT_SECONDS, -1
    while finished < len(futures):  # until every item is done, or none was in the last `stuck_after` seconds
        done = len(wait(futures, timeout=stuck_after).done)
        finished = len(futures) if done == finished else done
    outcomes = [_outcome(future, stuck_after) for future in futures]
    if any(status == "unavailable" for status, _ in outcomes) and pool is _pool:
        shutdown_pool()
    return outcomes
