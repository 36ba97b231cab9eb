"""Runs a sweep's cells on Dask distributed: a LocalCluster of worker processes by default, or an
existing cluster given by its scheduler's address or scheduler file. Both go through the same
`Client`, so what runs on a laptop runs unchanged on a cluster.

Why Dask: it schedules independent tasks over processes and machines, moves data to the workers
that need it, balances load by work stealing and survives a lost worker, which a hand-written
process pool would have to re-implement. Workers are processes with one thread each: the
simulator is Python between numpy calls, so threads would share one GIL.

Each trace is mapped once, here in the client (`map_trace`: the workers need not see the file),
and scattered to every worker (`client.scatter(..., broadcast=True)`); the cells of that trace take
the scattered copy as an argument instead of reading the trace again. A mapped trace costs 4-8
bytes per dirty event, so every worker holding every trace is cheap next to reading it per task,
and any worker can take any cell (no data movement decides where a cell runs).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from calm.core.errors import CalmError
from calm.core.version import __version__

# The local workers' own statistical profiler samples the running cell's stack every 10 ms
# (taking the GIL from it) for a dashboard that `calm sweep` does not start.
LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
INSTALL_HINT = "calm sweep needs Dask distributed: pip install 'calm[sweep]'"
CONNECT_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 30.0  # closing is done with Ctrl-C held back (see open_client), so it is bounded


class SweepInterrupted(Exception):
    """Ctrl-C during a sweep; carries the results of the cells that had finished."""

    def __init__(self, results: list[dict | None]) -> None:
        super().__init__("interrupted")
        self.results = results


def require_dask() -> None:
    """One line that says how to install Dask when it is missing (before anything else runs)."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise CalmError(f"{INSTALL_HINT} ({exc.name or 'dask'} is not installed)") from None


LOGGERS = {"distributed": logging.ERROR, "tornado": logging.CRITICAL}


def _quiet_dask_logs() -> dict[str, int]:
    """Dask logs worker restarts and closing streams at WARNING; a sweep reports failed cells in
    its table instead, and Ctrl-C is one line. Dask's errors still show while cells run; tornado's
    are callbacks failing inside Dask as it is interrupted (distributed.utils.sync's cancel).
    Returns the levels to restore."""
    old = {name: logging.getLogger(name).level for name in LOGGERS}
    for name, level in LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    return old


def _check_workers(client) -> None:
    """Every worker must run the calm that this client runs: the cells are calm's functions,
    unpickled there by name, and a different simulator would give different numbers."""
    def version() -> str:  # a local function: Dask pickles it by value, so it runs without calm
        try:
            from calm.core.version import __version__ as v
        except ImportError:
            return "not installed"
        return v

    found = client.run(version, on_error="return")
    for worker, v in sorted(found.items()):
        if isinstance(v, BaseException):
            raise CalmError(f"worker {worker} failed to report its calm version: {v}")
        if v != __version__:
            what = "has no calm installed" if v == "not installed" else f"runs calm {v}"
            raise CalmError(f"worker {worker} {what}, this client calm {__version__}: install the same "
                            f"calm (pip install 'calm[sweep]') on every worker")


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Holds SIGINT back while the local cluster starts, and keeps it from its processes.

    Ctrl-C at a terminal signals every process of the foreground group: a worker process would
    die printing its event loop's traceback, and a LocalCluster interrupted half-built cannot be
    closed cleanly. Threads and processes inherit the signal mask, so the workers (and the
    cluster's threads) started here never take SIGINT; this thread takes a Ctrl-C pressed
    meanwhile as soon as the cluster is up, and `calm sweep` then stops the cluster itself."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    # multiprocessing starts its resource tracker with the first worker and then *unblocks*
    # SIGINT in the calling thread (resource_tracker.ensure_running); started first, it doesn't.
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _check_address(address: str) -> None:
    """A scheduler address Dask can dial (`tcp://HOST:PORT`), refused before a Client is built:
    a Client that fails on a malformed address hangs a minute in its destructor."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        parse_host_port(parse_address(address)[1])
    except ValueError as exc:
        raise CalmError(f"bad Dask scheduler address '{address}': {exc} (expected tcp://HOST:PORT)") from None


def _wait_for_scheduler_file(path: str, note: Callable[[str], None]) -> None:
    """Dask's Client waits without end for a scheduler file to appear; this waits as long as a
    connection may take, saying so, then refuses."""
    if os.path.exists(path):
        return
    note(f"waiting up to {CONNECT_TIMEOUT_S:g} s for the Dask scheduler to write {path}")
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise CalmError(f"scheduler file {path} does not exist (start `dask scheduler --scheduler-file "
                            f"{path}`, or give --scheduler tcp://HOST:PORT)")
        time.sleep(0.2)


def _connect(scheduler: str | None, scheduler_file: str | None, note: Callable[[str], None]):
    from distributed import Client

    if scheduler:
        _check_address(scheduler)
    else:
        _wait_for_scheduler_file(scheduler_file, note)
    where = scheduler or f"the scheduler file {scheduler_file}"
    try:
        client = Client(scheduler, scheduler_file=scheduler_file, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise CalmError(f"cannot connect to the Dask scheduler at {where}: {exc}") from None
    return client


@contextmanager
def open_client(*, workers: int | None = None, scheduler: str | None = None,
                scheduler_file: str | None = None, note: Callable[[str], None] = print) -> Iterator:
    """A `distributed.Client` on a new LocalCluster of `workers` processes (default: the cores),
    or on the running cluster at `scheduler` / `scheduler_file`; closed (and the LocalCluster
    stopped) on exit, Ctrl-C included."""
    require_dask()
    import dask
    from distributed import Client, LocalCluster

    old_levels = _quiet_dask_logs()
    cluster = client = None
    try:
        if scheduler or scheduler_file:
            client = _connect(scheduler, scheduler_file, note)
            if not client.scheduler_info()["workers"]:
                note(f"waiting for a worker to join the Dask scheduler at {scheduler or scheduler_file} "
                     "(Ctrl-C stops)")
                client.wait_for_workers(1)
            _check_workers(client)
        else:
            n = workers or len(os.sched_getaffinity(0))  # the cores this process may use
            with _sigint_blocked(), dask.config.set(LOCAL_WORKER_CONFIG):
                # The local workers' logs are silenced: what matters of them (a cell that failed,
                # a worker lost) is in the table; at close they log lost heartbeats.
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.CRITICAL)
                client = Client(cluster, set_as_default=False)
        yield client
    finally:
        logging.getLogger("distributed").setLevel(logging.CRITICAL)  # closing: streams end, workers go
        with _sigint_blocked():  # a Ctrl-C now waits until the cluster is closed
            if client is not None:
                client.close(timeout=CLOSE_TIMEOUT_S)
            if cluster is not None:
                cluster.close(timeout=CLOSE_TIMEOUT_S)
        for name, level in old_levels.items():
            logging.getLogger(name).setLevel(level)


def cluster_summary(client) -> str:
    info = client.scheduler_info()
    threads = sum(w.get("nthreads", 1) for w in info["workers"].values())
    return f"{len(info['workers'])} Dask workers ({threads} threads) at {info['address']}"


def run_cells(client, plan, progress: Callable[[str], None] = lambda _: None,
              traces: dict[str, dict] | None = None) -> list[dict]:
    """Every cell's result (`calm.replay.sweep.run_cell` columns), in cell order; `traces`, when
    given, receives each mapped trace's description (`MappedTrace.describe()`).

    A trace that cannot be mapped gives error results for its cells; a task that fails on the
    cluster (a worker lost too often) gives an error result for its cell; the others go on.
    Ctrl-C cancels what is left and raises `SweepInterrupted` with what finished."""
    from distributed import as_completed

    from calm.replay.sweep import error_result, run_cell
    from calm.replay.trace_map import map_trace

    stop = _CtrlC()
    cells = plan.cells()
    by_trace: dict[str, list] = {t: [] for t in plan.traces}
    for cell in cells:
        by_trace[cell.trace].append(cell)
    results: list[dict | None] = [None] * len(cells)
    futures = {}
    try:
        for i, (trace, mine) in enumerate(by_trace.items()):
            progress(f"mapping trace {i + 1}/{len(plan.traces)}: {trace}")
            try:
                mapped = map_trace(trace, skip_seconds=plan.settings.skip_seconds)
            except CalmError as exc:
                for cell in mine:
                    results[cell.index] = error_result(f"trace {trace}: {exc}")
                continue
            if traces is not None:
                traces[trace] = mapped.describe()
            stop.check()
            shared = client.scatter(mapped, broadcast=True, hash=False)
            del mapped  # the workers hold it now
            for cell in mine:
                future = client.submit(run_cell, shared, cell, plan.settings, pure=False,
                                       key=f"calm-sweep-cell-{cell.index}-{os.getpid()}-{time.time_ns()}")
                futures[future] = cell
        t0 = time.monotonic()
        done = failed = sum(r is not None for r in results)  # cells of unreadable traces
        for future in _completed(as_completed(list(futures), loop=client.loop), stop):
            cell = futures.pop(future)
            if future.status == "finished":
                results[cell.index] = future.result()
            else:
                exc = future.exception()
                results[cell.index] = error_result(f"task failed on the cluster: {type(exc).__name__}: {exc}")
            done += 1
            failed += bool(results[cell.index]["error"])
            elapsed = time.monotonic() - t0
            left = (len(cells) - done) * elapsed / max(done, 1)
            progress(f"sweep: {done}/{len(cells)} cells done, {failed} failed, about {left:.0f} s left")
    except KeyboardInterrupt:
        client.cancel(list(futures), force=True)
        raise SweepInterrupted(results) from None
    finally:
        stop.restore()
    return results  # type: ignore[return-value]


class _CtrlC:
    """Takes Ctrl-C as a flag that the sweep checks (`check`) between its steps, instead of a
    KeyboardInterrupt raised wherever the main thread happens to be: one that lands in a weakref
    callback or a destructor, of which Dask runs many, is printed and dropped by Python
    ("Exception ignored in ...") and the sweep would go on."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame) -> None:
        self.event.set()

    def check(self) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _completed(pending, stop: _CtrlC, tick: float = 0.2) -> Iterator:
    """The futures of `pending` (a distributed.as_completed) as they finish, checking for Ctrl-C
    at least every `tick` seconds while none does."""
    while not pending.is_empty():
        stop.check()
        batch = pending.next_batch(block=False)
        if not batch:
            stop.event.wait(tick)
        yield from batch
