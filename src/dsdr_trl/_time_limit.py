"""
Hard per-item time limits that work from any thread.

math-verify protects its sympy calls with `signal.alarm`, which only works in the main thread and cannot interrupt
sympy while it is inside C code (a huge integer power, for instance). [`map_with_time_limit`] instead runs the work in
a long-lived child process and kills that process when an item overruns, which bounds the wall time no matter what the
item does.

The child is a plain `python -c` subprocess (not a `multiprocessing` "spawn"/"forkserver" child) so that it does not
re-import the parent's `__main__` script: a training script imports torch and transformers, and re-running its top
level in the worker would cost seconds and gigabytes (or re-run training if it lacks a `__main__` guard). The child
gets the parent's `sys.path` and only imports what the mapped function needs. POSIX only.
"""

from __future__ import annotations

import atexit
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["map_with_time_limit"]

# Worker start-up (interpreter, then importing the mapped function's module, e.g. sympy) is not charged to any item;
# it only has to finish within this generous bound.
STARTUP_TIMEOUT_SECONDS = 120.0

# Address space the worker may grow by past its size after importing the mapped function. A hostile input can make
# sympy allocate gigabytes within the time limit; this turns that into a `MemoryError` (the item gets `default`)
# instead of pushing the machine into the OOM killer. `None` disables the cap.
WORKER_MEMORY_HEADROOM_BYTES: int | None = 4 * 1024**3

# Executed by `python -c` in the child. It only touches the standard library until the parent's `sys.path` is in place.
_BOOTSTRAP = (
    "import sys\n"
    "from multiprocessing.connection import Connection\n"
    "conn = Connection(int(sys.argv[1]))\n"
    "sys.path[:] = conn.recv()\n"
    "from dsdr_trl._time_limit import _serve\n"
    "_serve(conn)\n"
)


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


def _serve(conn: Connection) -> None:
    """Worker loop: runs batches and streams back one `(status, value)` per item, in order.

    Messages from the parent carry `fn` and the items as separately pickled bytes, so that receiving a message never
    fails and a bad piece is reported where it belongs:
        - `("warm", fn_bytes)`: unpickle `fn` (imports its module) so that a later batch starts fast; no reply.
        - `("run", fn_bytes, item_bytes, memory_headroom)`: reply `("ack", None)` once `fn` is loaded, or
          `("fail", traceback)` if it cannot be; then `("ok", value)` or `("err", None)` per item.
    """
    # Ctrl-C in a terminal reaches the whole process group; the parent decides what happens to this worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    memory_capped = False
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        try:
            fn = pickle.loads(message[1])  # noqa: S301 - bytes this package's parent process pickled itself
        except Exception:
            if message[0] == "run":
                conn.send(("fail", traceback.format_exc()))
            continue
        if message[0] == "warm":
            continue
        _, _, item_bytes, memory_headroom = message
        if not memory_capped:
            # Measured after the first import of `fn`'s module so that imports are not charged to the headroom.
            _limit_address_space(memory_headroom)
            memory_capped = True
        conn.send(("ack", None))
        for pickled_item in item_bytes:
            try:
                reply = ("ok", fn(pickle.loads(pickled_item)))  # noqa: S301 - pickled by the parent, as above
            except BaseException:
                reply = ("err", None)
            try:
                conn.send(reply)
            except Exception:
                # The value itself could not be pickled: report the item as failed, keep the stream aligned.
                conn.send(("err", None))


class _Worker:
    """One worker subprocess and the parent's end of the socket connected to it."""

    def __init__(self, warm_fn: bytes | None = None):
        """Starts the process; `warm_fn` (a pickled function) is loaded right away so the first batch starts fast."""
        if not sys.executable:
            raise RuntimeError("map_with_time_limit needs `sys.executable` to start its worker process.")
        parent_sock, child_sock = socket.socketpair()
        try:
            self.process = subprocess.Popen(  # noqa: S603 - this interpreter with a constant bootstrap
                [sys.executable, "-c", _BOOTSTRAP, str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            parent_sock.close()
            raise
        finally:
            # The parent must not hold the child's end, otherwise it would never see EOF when the worker dies.
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        try:
            self.conn.send([path for path in sys.path if isinstance(path, str)])
            if warm_fn is not None:
                self.conn.send(("warm", warm_fn))
        except OSError:
            # A worker that died already is detected (and replaced) when it is first used.
            pass

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        try:
            self.process.kill()
        except OSError:
            pass
        self.process.wait()
        self.conn.close()


class _WorkerPool:
    """The active worker plus a pre-started, pre-warmed spare, so that the call after an overrun does not wait for a
    cold start (importing sympy and math-verify takes about a second)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active: _Worker | None = None
        self.spare: _Worker | None = None

    def _take_worker(self, fn_bytes: bytes) -> _Worker:
        if self.active is None or not self.active.alive():
            if self.active is not None:
                self.active.kill()
            # A live spare is already warm: promote it rather than start another cold worker.
            if self.spare is not None and self.spare.alive():
                self.active, self.spare = self.spare, None
            else:
                self.active = _Worker()
        if self.spare is None or not self.spare.alive():
            if self.spare is not None:
                self.spare.kill()
            # Started now, it loads `fn` while the active worker runs, and is ready when the first overrun happens.
            self.spare = _Worker(warm_fn=fn_bytes)
        return self.active

    def _discard_active(self, fn_bytes: bytes) -> None:
        """Kills the active worker after an overrun or a crash, promotes the spare (started and warmed during earlier
        work, so usually ready) and starts a new spare for the next replacement."""
        if self.active is not None:
            self.active.kill()
        self.active = self.spare
        self.spare = None
        if self.active is None or not self.active.alive():
            self.active = _Worker(warm_fn=fn_bytes)
        self.spare = _Worker(warm_fn=fn_bytes)

    def _start_batch(self, fn_bytes: bytes, item_bytes: list[bytes]) -> _Worker:
        """Sends a batch and waits for the worker to acknowledge it; retries once on a worker that died idle."""
        for attempt in range(2):
            worker = self._take_worker(fn_bytes)
            try:
                worker.conn.send(("run", fn_bytes, item_bytes, WORKER_MEMORY_HEADROOM_BYTES))
                if not worker.conn.poll(STARTUP_TIMEOUT_SECONDS):
                    self._discard_active(fn_bytes)
                    raise RuntimeError(
                        f"The time-limit worker did not start within {STARTUP_TIMEOUT_SECONDS} s; the machine may be "
                        "overloaded."
                    )
                status, payload = worker.conn.recv()
            except (EOFError, OSError):
                self._discard_active(fn_bytes)
                if attempt == 1:
                    raise RuntimeError("The time-limit worker died before running any item, twice in a row.") from None
                continue
            if status == "fail":
                raise RuntimeError(
                    "The time-limit worker could not load `fn`; it must be a top-level function that the worker can "
                    f"import by module name. Worker traceback:\n{payload}"
                )
            return worker
        raise AssertionError("unreachable")

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        seconds: float,
        default: R,
        stats: dict[str, int] | None,
    ) -> list[R]:
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
        results: list[R] = [default] * len(item_bytes)
        timeouts = errors = 0
        start = 0
        with self.lock:
            try:
                while start < len(item_bytes):
                    worker = self._start_batch(fn_bytes, item_bytes[start:])
                    index = start
                    while index < len(item_bytes):
                        if not worker.conn.poll(seconds):
                            timeouts += 1
                            self._discard_active(fn_bytes)
                            break
                        try:
                            status, value = worker.conn.recv()
                        except (EOFError, OSError):
                            # The worker died on this item (segfault, abort on allocation failure, external kill).
                            errors += 1
                            self._discard_active(fn_bytes)
                            break
                        except Exception:
                            # The value arrived but cannot be unpickled here; the stream is still aligned.
                            status, value = "err", None
                        if status == "ok":
                            results[index] = value
                        else:
                            errors += 1
                        index += 1
                    start = index + 1 if index < len(item_bytes) else index
            except BaseException:
                # The worker may still owe results for this batch; never hand it to a later call.
                if self.active is not None:
                    self.active.kill()
                    self.active = None
                raise
            finally:
                if stats is not None:
                    stats["timeouts"] = stats.get("timeouts", 0) + timeouts
                    stats["errors"] = stats.get("errors", 0) + errors
        return results

    def close(self) -> None:
        for worker in (self.active, self.spare):
            if worker is not None:
                worker.kill()
        self.active = self.spare = None


_pool: _WorkerPool | None = None
_pool_lock = threading.Lock()


def _get_pool() -> _WorkerPool:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _WorkerPool()
        return _pool


def _forget_pool_after_fork() -> None:
    # A forked child shares the parent's sockets; talking to (or killing) the parent's workers would corrupt them.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


def _shutdown() -> None:
    if _pool is not None:
        _pool.close()


os.register_at_fork(after_in_child=_forget_pool_after_fork)
atexit.register(_shutdown)


def map_with_time_limit(
    fn: Callable[[T], R],
    items: Sequence[T],
    seconds: float,
    default: R,
    stats: dict[str, int] | None = None,
) -> list[R]:
    """
    Applies `fn` to each item in a long-lived worker subprocess; an item that takes longer than `seconds` gets
    `default` (the worker is killed and restarted), an item whose call raises also gets `default`.

    The limit is hard: it holds from any thread and even when `fn` is stuck in C code, because the worker process is
    killed. Items are sent in one batch and run in order; the clock of an item starts when the previous result arrives,
    so worker start-up and imports are not charged to any item. Calls from several threads are serialized. The worker
    is started on first use, reused across calls, and killed at interpreter exit.

    Args:
        fn (`Callable[[T], R]`):
            Function applied to each item. It must be picklable by reference, i.e. a top-level function of a module that
            the worker can import by name with the parent's `sys.path`. Keep its module light to import: the worker
            imports it on start and after every restart.
        items (`Sequence[T]`):
            Picklable items.
        seconds (`float`):
            Wall-time limit per item, in seconds.
        default (`R`):
            Result for an item that overruns, raises, returns an unpicklable value or crashes the worker.
        stats (`dict[str, int]`, *optional*):
            If given, `stats["timeouts"]` is incremented by the number of items that overran and `stats["errors"]` by
            the number of items that raised or crashed the worker (missing keys start at 0). Useful for logging.

    Returns:
        `list[R]`: One result per item, in the order of `items`.

    Raises:
        `ValueError`: If `seconds` is not positive.
        `TypeError`: If `fn` or an item cannot be pickled.
        `RuntimeError`: If the worker cannot be started or cannot load `fn` (a set-up problem, not an item problem).
    """
    if not seconds > 0:
        raise ValueError(f"`seconds` must be positive, got {seconds}.")
    if len(items) == 0:
        return []
    return _get_pool().map(fn, items, seconds, default, stats)
