"""The open-loop Poisson engine of `calm load`: the schedule, one asyncio Protocol per request, and
the per-request measurements (see the package docstring for why it is built this way)."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from calm.core.errors import CalmError
from calm.workloads.loadgen.targets import Target, parse_targets

LATE_START = 0.010  # s: a request starting later than this after its arrival time is "late"
LATE_FRACTION = 0.01  # the schedule counts as not kept when more than this fraction starts late
READ_SIZE = 256 * 1024

OK, TIMEOUT, ERROR, DROPPED = "ok", "timeout", "error", "dropped"


# --- schedule ----------------------------------------------------------------------------------

def poisson_schedule(rate: float, count: int | None, duration: float | None,
                     rng: np.random.Generator) -> np.ndarray:
    """Arrival offsets (s from start) of a Poisson process: first `count` arrivals, those before
    `duration`, or both bounds. Generated vectorised in blocks (no per-arrival Python loop)."""
    if count is None and duration is None:
        raise CalmError("give --count, --duration or both: the load must be bounded")
    if count is not None:
        arrivals = np.cumsum(rng.exponential(1.0 / rate, size=count))
        return arrivals[arrivals < duration] if duration is not None else arrivals
    blocks, total = [], 0.0
    while total < duration:
        block = total + np.cumsum(rng.exponential(1.0 / rate, size=max(16, int(rate * duration * 0.25) + 16)))
        blocks.append(block)
        total = float(block[-1])
    arrivals = np.concatenate(blocks)
    return arrivals[arrivals < duration]


# --- HTTP over one connection ------------------------------------------------------------------

class _HttpGet(asyncio.Protocol):
    """Sends one request and counts the response; resolves `done` when the server closes."""

    def __init__(self, request: bytes, done: asyncio.Future):
        self.request = request
        self.done = done
        self.head = b""
        self.body_bytes = 0
        self.status = 0
        self.content_length: int | None = None
        self.in_body = False

    def connection_made(self, transport):
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.in_body:
            self.body_bytes += len(data)
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        header, rest = self.head[:end], self.head[end + 4:]
        self.in_body = True
        self.body_bytes = len(rest)
        lines = header.split(b"\r\n")
        try:
            self.status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            self.status = -1
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                try:
                    self.content_length = int(value.strip())
                except ValueError:
                    pass

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(exc)


async def _get(loop: asyncio.AbstractEventLoop, target: Target, request: bytes) -> tuple[int, int, str]:
    """(HTTP status, body bytes, error text or "") of one GET."""
    done = loop.create_future()
    transport, proto = await loop.create_connection(lambda: _HttpGet(request, done), target.address, target.port)
    try:
        exc = await done
    finally:
        transport.close()
    if exc is not None:
        return proto.status, proto.body_bytes, f"connection lost: {exc}"
    if not proto.in_body:
        return proto.status, 0, "no complete response header"
    if proto.content_length is not None and proto.body_bytes != proto.content_length:
        return proto.status, proto.body_bytes, f"body {proto.body_bytes} of {proto.content_length} bytes"
    if not 200 <= proto.status < 300:
        return proto.status, proto.body_bytes, f"HTTP status {proto.status}"
    return proto.status, proto.body_bytes, ""


# --- a run -------------------------------------------------------------------------------------

@dataclass
class LoadConfig:
    url: str | Sequence[str]  # one URL, or several: each arrival picks one uniformly at random
    rate: float  # mean arrivals per second
    count: int | None = None
    duration: float | None = None  # seconds during which arrivals happen
    sla: float = 1.0
    timeout: float = 10.0  # per request, seconds
    max_inflight: int = 2000
    seed: int | None = None

    @property
    def urls(self) -> list[str]:
        return [self.url] if isinstance(self.url, str) else list(self.url)


@dataclass
class LoadResult:
    """Per-request columns (arrival order) plus the run's bounds; latency is NaN unless ok."""

    config: LoadConfig
    seed: int
    scheduled: np.ndarray  # arrival offset, s
    lag: np.ndarray  # actual start - scheduled, s (NaN for dropped)
    latency: np.ndarray  # start to last byte, s
    status: np.ndarray  # HTTP status, 0 if none
    body_bytes: np.ndarray
    outcome: np.ndarray  # OK / TIMEOUT / ERROR / DROPPED
    target: np.ndarray  # index into config.urls
    error: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0  # first arrival time to last completion
    # CLOCK_MONOTONIC time of the schedule's origin: request i started at start_monotonic + scheduled[i] +
    # lag[i], on the clock of a calm trace's start_monotonic (one clock for every process of the machine)
    start_monotonic: float = 0.0


def run_load(config: LoadConfig) -> LoadResult:
    """Runs the schedule against the target(s) and returns every request's measurements.

    With several URLs each arrival picks one uniformly at random (repeat a URL to weight it): a
    random split of a Poisson stream, so each URL's requests are themselves a Poisson stream."""
    targets = parse_targets(config.urls)
    if not targets:
        raise CalmError("give at least one URL")
    _validate(config)
    seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(4), "little")
    rng = np.random.default_rng(seed)
    schedule = poisson_schedule(config.rate, config.count, config.duration, rng)
    choice = rng.integers(len(targets), size=len(schedule))
    _raise_fd_limit(config.max_inflight)
    return asyncio.run(_run(config, targets, schedule, choice, seed))


def _validate(config: LoadConfig) -> None:
    if not (math.isfinite(config.rate) and config.rate > 0):
        raise CalmError(f"--rate must be a positive number of requests per second, not {config.rate:g}")
    if config.count is not None and config.count <= 0:
        raise CalmError(f"--count must be a positive number of requests, not {config.count}")
    for name, value in (("--duration", config.duration), ("--sla", config.sla), ("--timeout", config.timeout)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise CalmError(f"{name} must be a positive number of seconds, not {value:g}")
    if config.max_inflight <= 0:
        raise CalmError(f"--max-inflight must be positive, not {config.max_inflight}")


def _raise_fd_limit(needed: int) -> None:
    """Each in-flight request holds a socket; lift the soft fd limit toward the hard one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


async def _run(config: LoadConfig, targets: list[Target], schedule: np.ndarray, choice: np.ndarray,
               seed: int) -> LoadResult:
    loop = asyncio.get_running_loop()
    n = len(schedule)
    lag = np.full(n, np.nan)
    latency = np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int32)
    body = np.zeros(n, dtype=np.int64)
    outcome = np.full(n, DROPPED, dtype=object)
    errors = [""] * n
    requests = [(f"GET {t.path} HTTP/1.1\r\nHost: {t.host_header}\r\n"
                 f"User-Agent: calm-load\r\nAccept: */*\r\nConnection: close\r\n\r\n").encode() for t in targets]
    inflight: set[asyncio.Task] = set()
    last_end = [0.0]

    async def one(i: int, t0: float) -> None:
        start = time.monotonic()
        lag[i] = start - t0 - schedule[i]
        try:
            async with asyncio.timeout(config.timeout):  # cheaper than wait_for: no extra task
                st, nbytes, err = await _get(loop, targets[choice[i]], requests[choice[i]])
            latency[i] = time.monotonic() - start
            status[i], body[i] = st, nbytes
            outcome[i], errors[i] = (ERROR, err) if err else (OK, "")
        except (asyncio.TimeoutError, TimeoutError):
            outcome[i], errors[i] = TIMEOUT, f"no complete response within {config.timeout:g} s"
        except OSError as exc:
            outcome[i], errors[i] = ERROR, exc.strerror or str(exc)
        last_end[0] = max(last_end[0], time.monotonic())

    t0 = time.monotonic()
    for i in range(n):
        delay = t0 + schedule[i] - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(inflight) >= config.max_inflight:
            errors[i] = f"more than {config.max_inflight} requests in flight"
            continue
        task = loop.create_task(one(i, t0))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
    if inflight:
        await asyncio.gather(*inflight)
    wall = last_end[0] - (t0 + schedule[0]) if n and last_end[0] else 0.0
    return LoadResult(config, seed, schedule, lag, latency, status, body, outcome.astype(str), choice, errors,
                      max(wall, 0.0), t0)


