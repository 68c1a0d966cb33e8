"""
Hard per-item time limits that work from any thread, on a pool of worker processes.

math-verify protects its sympy calls with `signal.alarm`, which only works in the main thread and cannot interrupt
sympy while it is inside C code (a huge integer power, for instance). [`run_with_time_limit`] instead runs each item in
a worker process of a pebble `ProcessPool`, which kills the worker when its item overruns and starts a replacement, so
the limit holds whatever the item does.

- **Start method.** Workers start with loky's `"loky"` method: a fresh interpreter, like `"spawn"`, that does not
  re-import the parent's `__main__` (a training script imports torch and transformers; re-running its top level in
  each worker would cost seconds and gigabytes, or re-run training if it lacks a `__main__` guard). A worker imports
  only this module, pebble, and the modules of the functions it runs.
- **Start-up outside the clock.** Each worker loads every function mapped so far in its initializer, before it takes
  any item, and the clock of an item starts when a worker takes it. A function the running pool has not loaded yet
  replaces the pool once.
- **Memory cap.** After loading, a worker caps its address space at its size plus [`WORKER_MEMORY_HEADROOM_BYTES`], so
  that a hostile input raises `MemoryError` (the item fails) instead of calling the OOM killer.
- **No orphans.** A worker asks the kernel to kill it when its parent dies (`PR_SET_PDEATHSIG`, Linux), mid-item
  included: a killed or preempted training process leaves no worker behind.
- **Number of workers.** [`worker_count`]: the cores this process may run on, divided by the ranks on this machine.
"""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal, NamedTuple, TypeVar

from loky.backend import get_context
from pebble import ProcessPool

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["Outcome", "map_with_time_limit", "run_with_time_limit", "shutdown_pool", "worker_count"]

# A pool that shows no progress for this long (no item finished, beyond the item time limit itself) is given up: its
# items are reported `"unavailable"` and the next call starts a new pool. Worker start-up (an interpreter, then the
# imports of the mapped functions, e.g. sympy) has to fit in it.
STARTUP_TIMEOUT_SECONDS = 120.0

# Address space a worker may grow by past its size after loading the mapped functions. A hostile input can make sympy
# allocate gigabytes within the time limit; this turns that into a `MemoryError` (the item fails) instead of pushing
# the machine into the OOM killer. `None` disables the cap.
WORKER_MEMORY_HEADROOM_BYTES: int | None = 4 * 1024**3

# Number of worker processes; `None` reads `DSDR_VERIFIER_WORKERS`, else applies the default rule of `worker_count`.
WORKERS: int | None = None
WORKERS_ENV = "DSDR_VERIFIER_WORKERS"

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WORKER_NAME = "pebble_pool_worker"  # the name pebble gives its worker processes


class Outcome(NamedTuple):
    """What became of one item of [`run_with_time_limit`].

    `status` is `"ok"` (`value` is the result), `"timeout"` (the item overran; its worker was killed), `"error"` (the
    call raised, crashed its worker, or returned a value that cannot be pickled) or `"unavailable"` (the item was not
    run: the pool could not start or stopped answering, or the worker could not load the function; `value` says why).
    """

    status: Literal["ok", "timeout", "error", "unavailable"]
    value: Any = None


def worker_count() -> int:
    """
    Number of worker processes of the pool.

    [`WORKERS`] if set, else the environment variable `DSDR_VERIFIER_WORKERS`, else the cores this process may run on
    (`os.sched_getaffinity`) divided by the number of processes on this machine (`LOCAL_WORLD_SIZE`, set by torchrun
    and accelerate; 1 when unset), at least 1. In a multi-GPU run each rank verifies its own completions, so the ranks
    of a machine share its cores instead of each starting one worker per core.

    Raises:
        `ValueError`: If the setting or one of the variables is not a positive integer.
    """
    if WORKERS is not None:
        return _positive(WORKERS, "dsdr_trl._time_limit.WORKERS")
    if os.environ.get(WORKERS_ENV):
        return _positive(os.environ[WORKERS_ENV], WORKERS_ENV)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ranks = _positive(os.environ.get("LOCAL_WORLD_SIZE") or 1, "LOCAL_WORLD_SIZE")
    return max(1, cores // ranks)


def _positive(value: Any, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return number


# ---------------------------------------------------------------------------------------------------------------------
# In the worker process

# Pickled function -> the function, or the traceback of the failure to load it.
_loaded: dict[bytes, Callable[[Any], Any] | str] = {}


class _NotLoaded(Exception):
    """The worker could not load (unpickle) the mapped function; the message is the worker's traceback."""


def _die_with_parent(parent_pid: int) -> None:
    """Has the kernel kill this process when the thread that started it exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:
        # The parent died before the request took effect.
        os._exit(1)


def _limit_address_space(headroom: int | None) -> None:
    """Caps the worker's virtual memory at its current size plus `headroom` (Linux only, best effort)."""
    if headroom is None:
        return
    try:
        import resource

        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = current + headroom
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        pass


def _load(fn_bytes: bytes) -> Callable[[Any], Any] | str:
    if fn_bytes not in _loaded:
        try:
            _loaded[fn_bytes] = pickle.loads(fn_bytes)  # noqa: S301 - bytes this package's parent process pickled itself
        except Exception:
            _loaded[fn_bytes] = traceback.format_exc()
    return _loaded[fn_bytes]


def _init_worker(parent_pid: int, functions: tuple[bytes, ...], memory_headroom: int | None, ready: Any) -> None:
    """Pool initializer: runs in each new worker before it takes any item; releases `ready` when done."""
    # pebble ends a worker with SIGTERM and a Python handler, which cannot run while an item is stuck in C code; the
    # default action ends the worker at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent_pid)
    for fn_bytes in functions:
        _load(fn_bytes)
    # Measured after the imports, so that they are not charged to the headroom.
    _limit_address_space(memory_headroom)
    ready.release()


def _run(fn_bytes: bytes, item_bytes: bytes) -> tuple[bool, Any]:
    """One item: `(True, result)`, or `(False, None)` if the call raised."""
    fn = _load(fn_bytes)
    if isinstance(fn, str):
        raise _NotLoaded(fn)
    try:
        return True, fn(pickle.loads(item_bytes))  # noqa: S301 - pickled by the parent, as above
    except BaseException:
        return False, None


# ---------------------------------------------------------------------------------------------------------------------
# In the parent process


class _Pool:
    """A pebble pool whose workers have loaded `functions`, plus the thread that started them.

    `PR_SET_PDEATHSIG` fires when the thread that started a worker exits, not only the process. pebble starts
    replacement workers from its own manager thread, which lives as long as the pool, and the first workers from the
    thread that starts the pool: here a thread of this class that lives as long as the pool too, so that a short-lived
    caller thread cannot take the workers down with it.
    """

    def __init__(self, workers: int, functions: tuple[bytes, ...]):
        """Starts the workers and waits until each has loaded `functions`, so that the first call has them all."""
        self.workers = workers
        self.functions = functions
        context = get_context("loky")
        self._ready = context.Semaphore(0)
        self.pebble = ProcessPool(
            max_workers=workers,
            initializer=_init_worker,
            initargs=(os.getpid(), functions, WORKER_MEMORY_HEADROOM_BYTES, self._ready),
            context=context,
        )
        self._closed = threading.Event()
        self._start_error: BaseException | None = None
        threading.Thread(target=self._own, name="dsdr-time-limit-pool", daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        for _ in range(workers):
            started = self._ready.acquire(timeout=max(0.0, deadline - time.monotonic()))
            if self._start_error is not None or not started:
                self.close(wait_for_workers=False)
                raise RuntimeError(
                    f"The time-limit pool could not start its workers: {self._start_error!r}"
                    if self._start_error is not None
                    else f"The time-limit pool's workers did not start within {STARTUP_TIMEOUT_SECONDS:g} s."
                )

    def _own(self) -> None:
        try:
            self.pebble.active  # noqa: B018 - starts the pool, and its first workers, from this thread
        except BaseException as error:  # e.g. a daemonic process may not start processes
            self._start_error = error
            self._ready.release()  # wakes the waiting constructor
        self._closed.wait()

    def usable(self, workers: int, fn_bytes: bytes) -> bool:
        return self.pebble.active and self.workers == workers and fn_bytes in self.functions

    def close(self, wait_for_workers: bool) -> None:
        """Stops the workers (killing any busy one); in the background unless `wait_for_workers`."""

        def stop() -> None:
            self.pebble.stop()
            try:
                self.pebble.join()
            finally:
                self._closed.set()

        if wait_for_workers:
            stop()
        else:
            threading.Thread(target=stop, name="dsdr-time-limit-pool-stop", daemon=True).start()


_pool: _Pool | None = None
_functions: dict[bytes, None] = {}  # every function mapped so far, in order; new workers load them all
_lock = threading.Lock()


def _get_pool(fn_bytes: bytes) -> _Pool:
    global _pool
    _functions.setdefault(fn_bytes)
    workers = worker_count()
    if _pool is None or not _pool.usable(workers, fn_bytes):
        shutdown_pool(wait=False)
        _pool = _Pool(workers, tuple(_functions))
    return _pool


def _outcome(future: Future) -> Outcome | None:
    """The outcome of a finished item, or `None` if the pool broke before running it."""
    error = future.exception()
    if error is None:
        succeeded, value = future.result()
        return Outcome("ok", value) if succeeded else Outcome("error")
    if isinstance(error, TimeoutError):
        return Outcome("timeout")
    if isinstance(error, _NotLoaded):
        return Outcome(
            "unavailable",
            "the workers could not load `fn`; it must be a top-level function that the workers can import by module "
            f"name. Worker traceback:\n{error}",
        )
    if isinstance(error, BrokenProcessPool):
        return None
    # The worker died on this item (segfault, abort, external kill), or its result cannot be pickled.
    return Outcome("error")


def _collect(futures: dict[Future, int], outcomes: list[Outcome | None], seconds: float) -> list[int]:
    """Fills `outcomes` as the futures finish; returns the indices that the pool failed to run."""
    finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
    for future in futures:
        future.add_done_callback(finished.put)
    stalled = False
    for _ in range(len(futures)):
        try:
            future = finished.get(timeout=seconds + STARTUP_TIMEOUT_SECONDS)
        except queue.Empty:
            # Every running item finishes or is killed within `seconds`: a pool without progress is stuck.
            stalled = True
            break
        outcomes[futures[future]] = _outcome(future)
    failed = []
    for future, index in futures.items():
        if stalled and (future.cancel() or not future.done()):
            outcomes[index] = Outcome(
                "unavailable", f"no worker answered within {seconds + STARTUP_TIMEOUT_SECONDS:g} s"
            )
        elif outcomes[index] is None and (outcome := _outcome(future)) is not None:
            outcomes[index] = outcome  # finished while the pool was given up
        elif outcomes[index] is None:
            failed.append(index)
    return failed


def _run_locked(fn_bytes: bytes, item_bytes: list[bytes], seconds: float) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(item_bytes)
    todo = list(range(len(item_bytes)))
    reason = "the pool broke twice"
    # A pool that breaks (every worker died while idle, e.g. killed from outside) is replaced and the items it did not
    # run are tried once more.
    for _ in range(2):
        try:
            pool = _get_pool(fn_bytes)
        except RuntimeError as error:
            reason = str(error)
            break
        try:
            futures = {pool.pebble.schedule(_run, args=(fn_bytes, item_bytes[i]), timeout=seconds): i for i in todo}
        except RuntimeError as error:
            # The pool broke since it was checked.
            shutdown_pool(wait=False)
            reason = str(error)
            continue
        todo = _collect(futures, outcomes, seconds)
        if any(outcome is not None and outcome.status == "unavailable" for outcome in outcomes):
            shutdown_pool(wait=False)
            _functions.pop(fn_bytes, None)
        if not todo:
            break
        shutdown_pool(wait=False)
    for index in todo:
        outcomes[index] = Outcome("unavailable", reason)
    return outcomes  # type: ignore[return-value]


def run_with_time_limit(fn: Callable[[T], R], items: Sequence[T], seconds: float) -> list[Outcome]:
    """
    Applies `fn` to each item in a pool of worker processes, with a hard wall-time limit per item.

    An item that runs longer than `seconds` has its worker killed and replaced. The limit holds from any thread and
    even when `fn` is stuck in C code. Items run in parallel on [`worker_count`] workers; the clock of an item starts
    when a worker takes it, so worker start-up and imports are not charged to any item. Calls from several threads are
    serialized. The pool is started on first use, reused across calls, and stopped at interpreter exit; it never
    raises for a problem of the pool: such items come back `"unavailable"`.

    Args:
        fn (`Callable[[T], R]`):
            Function applied to each item. It must be picklable by reference, i.e. a top-level function of a module that
            the workers can import by name with the parent's `sys.path`. Keep its module light to import: each worker
            imports it on start. Each new function restarts the pool once.
        items (`Sequence[T]`):
            Picklable items.
        seconds (`float`):
            Wall-time limit per item, in seconds.

    Returns:
        `list[Outcome]`: One [`Outcome`] per item, in the order of `items`.

    Raises:
        `ValueError`: If `seconds` is not positive, or the number of workers is misconfigured (see [`worker_count`]).
        `TypeError`: If `fn` or an item cannot be pickled.
    """
    if not seconds > 0:
        raise ValueError(f"`seconds` must be positive, got {seconds}.")
    # Pickled up front so that an unpicklable argument is reported before any worker is involved.
    try:
        fn_bytes = pickle.dumps(fn)
    except Exception as error:
        raise TypeError(
            f"`fn` must be picklable by reference (a top-level function of an importable module), got {fn!r}."
        ) from error
    try:
        item_bytes = [pickle.dumps(item) for item in items]
    except Exception as error:
        raise TypeError(f"Every item must be picklable: {error}") from error
    if not item_bytes:
        return []
    worker_count()  # a misconfigured number of workers is reported here, not as an unavailable pool
    with _lock:
        return _run_locked(fn_bytes, item_bytes, seconds)


def map_with_time_limit(
    fn: Callable[[T], R],
    items: Sequence[T],
    seconds: float,
    default: R,
    stats: dict[str, int] | None = None,
) -> list[R]:
    """
    [`run_with_time_limit`] with one value per item: the result, or `default` for an item that overran or failed.

    Args:
        fn (`Callable[[T], R]`):
            Function applied to each item (see [`run_with_time_limit`]).
        items (`Sequence[T]`):
            Picklable items.
        seconds (`float`):
            Wall-time limit per item, in seconds.
        default (`R`):
            Result for an item that overruns, raises, returns an unpicklable value or crashes its worker.
        stats (`dict[str, int]`, *optional*):
            If given, `stats["timeouts"]` is incremented by the number of items that overran and `stats["errors"]` by
            the number of items that raised or crashed their worker (missing keys start at 0). Useful for logging.

    Returns:
        `list[R]`: One result per item, in the order of `items`.

    Raises:
        `ValueError`, `TypeError`: As [`run_with_time_limit`].
        `RuntimeError`: If some item could not be run (the pool is unavailable, or the workers cannot load `fn`).
    """
    outcomes = run_with_time_limit(fn, items, seconds)
    unavailable = [outcome.value for outcome in outcomes if outcome.status == "unavailable"]
    if unavailable:
        raise RuntimeError(f"The time-limit pool could not run {len(unavailable)} item(s): {unavailable[0]}")
    if stats is not None:
        for key, status in (("timeouts", "timeout"), ("errors", "error")):
            stats[key] = stats.get(key, 0) + sum(outcome.status == status for outcome in outcomes)
    return [outcome.value if outcome.status == "ok" else default for outcome in outcomes]


def _forget_pool_after_fork() -> None:
    # A forked child shares the parent's pipes; talking to (or stopping) the parent's workers would corrupt them. It
    # also inherits multiprocessing's list of the parent's children, from which pebble's exit handler would stop the
    # parent's workers when the child exits: take them out (a process started by multiprocessing does the same).
    global _pool, _lock
    if _pool is not None:
        multiprocessing.process._children.difference_update(  # type: ignore[attr-defined]
            [process for process in multiprocessing.process._children if process.name == _WORKER_NAME]  # type: ignore[attr-defined]
        )
    _pool = None
    _lock = threading.Lock()


def shutdown_pool(wait: bool = True) -> None:
    """
    Stops the pool's workers now (a busy one is killed); the next call starts a new pool. Called at interpreter exit.

    Useful to free the workers' memory, or to start the next call from a full pool of freshly started workers. A call in
    flight in another thread runs its remaining items on a new pool.

    Args:
        wait (`bool`, *optional*, defaults to `True`):
            Whether to wait for the workers to exit; otherwise they are stopped in the background.
    """
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        pool.close(wait_for_workers=wait)


os.register_at_fork(after_in_child=_forget_pool_after_fork)
atexit.register(shutdown_pool)
