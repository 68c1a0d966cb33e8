"""
The verifier's worker processes: a hard wall-time limit per item, from any thread, whatever the item does.

math-verify guards SymPy with `signal.alarm`, which works only in the main thread and cannot interrupt SymPy inside C
code (a huge integer power, for instance). Here each item is one `schedule(fn, args=(item,), timeout=seconds)` on a
pebble `ProcessPool`: pebble starts an item's clock when a worker takes it, after the worker's `initializer`
([`_init_worker`]: SIGTERM kills at once, the worker dies with its parent, its memory is capped, math-verify and SymPy
are imported and warmed), and kills and replaces a worker whose item overruns. Each result, exception or overrun of an
item becomes an [`Outcome`]; a pool that cannot start, breaks or stops answering is stopped, its items come back
`"unavailable"`, and the next call starts a new one.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal, NamedTuple

from loky.backend import get_context
from pebble import ProcessPool

__all__ = ["Outcome", "run_with_time_limit", "shutdown_pool", "verifier_workers"]

# Number of worker processes; `None` reads `DSDR_VERIFIER_WORKERS`, else applies the rule of [`verifier_workers`].
WORKERS: int | None = None
WORKERS_ENV = "DSDR_VERIFIER_WORKERS"

# A pool in which no item finished for an item's limit plus this long is stuck (its workers cannot start or are
# stopped): it is given up. A worker's start (an interpreter, math-verify and SymPy) has to fit in it.
STARTUP_TIMEOUT_SECONDS = 120.0

# Address space a worker may grow by past its size after its set-up, so that a hostile input that makes SymPy allocate
# gigabytes fails its item with `MemoryError` instead of calling the OOM killer. `None` disables the cap (Linux only).
WORKER_MEMORY_HEADROOM_BYTES: int | None = 4 * 1024**3


class Outcome(NamedTuple):
    """What became of one item: `"ok"` (`value` is the result), `"timeout"` (it overran; its worker was killed),
    `"error"` (it raised, crashed its worker or returned what cannot be pickled; `value` is the exception) or
    `"unavailable"` (the pool could not run it; `value` says why)."""

    status: Literal["ok", "timeout", "error", "unavailable"]
    value: Any = None


def verifier_workers() -> int:
    """
    The number of verifier worker processes of this process.

    [`WORKERS`] if set, else `DSDR_VERIFIER_WORKERS`, else the cores this process may run on divided by the processes on
    this machine (`LOCAL_WORLD_SIZE`, set by torchrun and accelerate), at least 1: each rank verifies its own
    completions, so the ranks of a machine share its cores.

    Raises:
        `ValueError`: If the setting or one of the variables is not a positive integer (one line with the fix).
    """
    if WORKERS is not None:
        return _positive(WORKERS, "dsdr_trl._time_limit.WORKERS")
    if os.environ.get(WORKERS_ENV):
        return _positive(os.environ[WORKERS_ENV], WORKERS_ENV)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // _positive(os.environ.get("LOCAL_WORLD_SIZE") or 1, "LOCAL_WORLD_SIZE"))


def _positive(value: Any, name: str) -> int:
    number = int(value) if str(value).strip().isdigit() else 0
    if number < 1:
        raise ValueError(
            f"{name} must be a positive integer, got {value!r}; set it to the number of verifier processes per rank "
            "(e.g. 2), or unset it for one per core."
        )
    return number


def _init_worker(parent_pid: int, memory_headroom: int | None) -> None:
    """Each worker's set-up, run by pebble before the worker takes its first item."""
    # pebble's SIGTERM handler is Python code, which cannot run while an item is stuck in C code.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the thread that started it exits
        if os.getppid() != parent_pid:  # the parent died before that took effect
            os._exit(1)
    import math_verify

    # The time limit is this pool's; math-verify would warn once that it runs without its own.
    math_verify.parser.TIMEOUT_WARNING_SHOWN = math_verify.grader.TIMEOUT_WARNING_SHOWN = True
    math_verify.verify(math_verify.parse("$x+1$"), math_verify.parse("$1+x$"), timeout_seconds=None)
    if memory_headroom is not None and sys.platform.startswith("linux"):
        import resource

        with open("/proc/self/statm") as statm:  # measured after the imports, which are not charged to the headroom
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        cap = size + memory_headroom if hard == resource.RLIM_INFINITY else min(size + memory_headroom, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


_lock = threading.Lock()
_pool: ProcessPool | None = None
_pool_key = (0, 0)  # (process id, workers) that `_pool` was started for


def _own(pool: ProcessPool, started: threading.Event) -> None:
    # PR_SET_PDEATHSIG fires when the *thread* that started a worker exits, and pebble starts the first workers from the
    # thread that first uses the pool (the later ones from its own): they are started from this thread, which lives as
    # long as the pool, so that a caller's short-lived thread does not take them down.
    try:
        running = pool.active
    except Exception:  # e.g. a daemonic process may not start processes; `schedule` reports it
        running = False
    started.set()
    while running and pool.active:
        time.sleep(1.0)


def _current_pool() -> ProcessPool:
    global _pool, _pool_key
    key = (os.getpid(), verifier_workers())
    with _lock:
        if _pool is None or _pool_key != key or not _pool.active:
            if _pool is not None and _pool_key[0] == key[0]:  # a forked child leaves its parent's workers alone
                _stop(_pool)
            # loky's start method: a fresh interpreter, like "spawn", that does not run the parent's `__main__` again
            # (a training script without a `__main__` guard would train again in every worker).
            _pool = ProcessPool(
                max_workers=key[1],
                initializer=_init_worker,
                initargs=(os.getpid(), WORKER_MEMORY_HEADROOM_BYTES),
                context=get_context("loky"),
            )
            _pool_key, started = key, threading.Event()
            threading.Thread(target=_own, args=(_pool, started), name="dsdr-verifier-pool", daemon=True).start()
            started.wait()
        return _pool


def _stop(pool: ProcessPool) -> None:
    pool.stop()
    pool.join()


def shutdown_pool() -> None:
    """Stops the workers now (a busy one is killed); the next call starts a new pool."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
        if pool is not None and _pool_key[0] == os.getpid():
            _stop(pool)


def _outcome(future: Future, stuck_after: float) -> Outcome:
    if not future.done():
        future.cancel()
        return Outcome("unavailable", f"no worker finished an item within {stuck_after:g} s")
    error = future.exception()
    if error is None:
        return Outcome("ok", future.result())
    if isinstance(error, TimeoutError):
        return Outcome("timeout")
    if isinstance(error, BrokenProcessPool):
        return Outcome("unavailable", f"the pool broke ({error})")
    return Outcome("error", error)  # raised, crashed its worker (ProcessExpired), or an unpicklable result


def run_with_time_limit(fn: Callable[[Any], Any], items: Sequence[Any], seconds: float) -> list[Outcome]:
    """
    Applies `fn` to each item on the pool's workers, each item killed after `seconds` of wall time.

    Args:
        fn (`Callable`): A top-level function of a module the workers can import (pickled by reference).
        items (`Sequence`): Picklable items.
        seconds (`float`): Wall-time limit per item.

    Returns:
        `list[Outcome]`: One per item, in order. A problem of the pool is never raised: its items are `"unavailable"`.

    Raises:
        `ValueError`: If `seconds` is not positive or the number of workers is misconfigured ([`verifier_workers`]).
    """
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
    stuck_after = seconds + STARTUP_TIMEOUT_SECONDS
    pending: set[Future] = set(futures)
    while pending:
        done, pending = wait(pending, timeout=stuck_after, return_when=FIRST_COMPLETED)
        if not done:
            break
    outcomes = [_outcome(future, stuck_after) for future in futures]
    if any(outcome.status == "unavailable" for outcome in outcomes) and pool is _pool:
        shutdown_pool()
    return outcomes
