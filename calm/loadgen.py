"""An open-loop Poisson HTTP load generator (`calm load`): the workload side of the CALM cost model.

WHY open loop: the model's F(Bs) is the probability that a request of a Poisson stream violates its
SLA. A closed-loop client (send, wait, send) slows down when the service slows down and so hides
exactly the queueing that causes violations ("coordinated omission"). Here arrival times are drawn
up front (exponential gaps at the given rate) and every request starts at its time whether or not
earlier ones finished. One asyncio event loop drives all connections through a small Protocol (no
thread per request, no parsing beyond the status line and Content-Length), which keeps the
generator's own cost low enough for a few thousand requests/s on one core. When it still cannot keep
the schedule, the result says so: every request's start lag (actual start - scheduled arrival) is
recorded and summarised.

Each request is one HTTP/1.1 GET on a fresh TCP connection (`Connection: close`), as independent
Poisson clients would send. Latency runs from the request's actual start (connect) to the last byte
of the response. Timeouts, refused connections, truncated bodies, non-2xx answers and requests
dropped because too many were in flight are failures; a failure counts as an SLA violation.

Safety: traffic may only go to loopback addresses, or to an address on a veth inside an isolated
network namespace that calm's own scripts created (named `calm-*`, holding only lo and veth
interfaces and no default route). Host names other than `localhost` are refused without a DNS
lookup.
"""

from __future__ import annotations

import asyncio
import csv
import ipaddress
import json
import math
import os
import subprocess
import time
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from calm.errors import CalmError

NETNS_PREFIX = "calm-"  # network namespaces made by calm's scripts carry this name prefix
NETNS_DIR = Path("/run/netns")
LATE_START = 0.010  # s: a request starting later than this after its arrival time is "late"
LATE_FRACTION = 0.01  # the schedule counts as not kept when more than this fraction starts late
READ_SIZE = 256 * 1024

OK, TIMEOUT, ERROR, DROPPED = "ok", "timeout", "error", "dropped"


# --- target ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    url: str
    address: str  # IP literal the connection goes to
    port: int
    path: str  # request target, with query
    host_header: str


def parse_target(url: str) -> Target:
    """Parses an http:// URL and checks that its address is one calm may send to (module doc)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise CalmError(f"URL '{url}' must start with http:// (calm load speaks plain HTTP only)")
    try:
        host, port = parts.hostname, parts.port or 80
    except ValueError as exc:
        raise CalmError(f"URL '{url}': {exc}") from None
    if not host:
        raise CalmError(f"URL '{url}' has no host")
    if host == "localhost" or host.endswith(".localhost"):
        address = "127.0.0.1"
    else:
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            raise CalmError(f"host '{host}' is not an IP address: calm load only sends to loopback "
                            f"(127.0.0.0/8, ::1, localhost) or to a calm-made network namespace, "
                            f"and does no DNS lookups") from None
    check_address_allowed(address)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    return Target(url, address, port, path, host_header)


def check_address_allowed(address: str) -> None:
    """Loopback always; otherwise only a directly connected veth address inside a calm netns."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    if ip.is_loopback or (mapped is not None and mapped.is_loopback):
        return
    netns = current_calm_netns()
    if netns is None:
        raise CalmError(f"refusing to send to {address}: not a loopback address, and calm load is not "
                        f"running inside a network namespace made by calm (named {NETNS_PREFIX}*)")
    links = _links_here()
    others = [name for name, (kind, _) in links.items() if name != "lo" and kind != "veth"]
    if others:
        raise CalmError(f"refusing to send to {address}: network namespace {netns} has non-veth "
                        f"interfaces ({', '.join(sorted(others))}), so it is not isolated")
    if _has_default_route():
        raise CalmError(f"refusing to send to {address}: network namespace {netns} has a default route")
    for name, (kind, networks) in links.items():
        if kind == "veth" and any(ip in net for net in networks):
            return
    raise CalmError(f"refusing to send to {address}: it is not on a veth subnet of network namespace {netns}")


def current_calm_netns() -> str | None:
    """The name of the calm-made named netns this process runs in, or None."""
    try:
        here = os.stat("/proc/self/ns/net")
        names = sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NETNS_PREFIX))
    except OSError:
        return None
    for name in names:
        try:
            st = os.stat(NETNS_DIR / name)
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (here.st_ino, here.st_dev):
            return name
    return None


def _ip_json(*args: str) -> list[dict]:
    try:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CalmError(f"cannot inspect this network namespace with `ip -j {' '.join(args)}`: {exc}") from None
    return json.loads(out.stdout or "[]")


def _links_here() -> dict[str, tuple[str, list]]:
    """Interface name -> (link kind, its connected networks) in the current netns."""
    links = {}
    for link in _ip_json("-d", "addr", "show"):
        kind = link.get("linkinfo", {}).get("info_kind", "")
        nets = [ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
                for a in link.get("addr_info", []) if "local" in a]
        links[link["ifname"]] = (kind, nets)
    return links


def _has_default_route() -> bool:
    return bool(_ip_json("route", "show", "default")) or bool(_ip_json("-6", "route", "show", "default"))


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


def run_load(config: LoadConfig) -> LoadResult:
    """Runs the schedule against the target(s) and returns every request's measurements.

    With several URLs each arrival picks one uniformly at random (repeat a URL to weight it): a
    random split of a Poisson stream, so each URL's requests are themselves a Poisson stream."""
    targets = [parse_target(url) for url in config.urls]
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
        start = time.perf_counter()
        lag[i] = start - t0 - schedule[i]
        try:
            async with asyncio.timeout(config.timeout):  # cheaper than wait_for: no extra task
                st, nbytes, err = await _get(loop, targets[choice[i]], requests[choice[i]])
            latency[i] = time.perf_counter() - start
            status[i], body[i] = st, nbytes
            outcome[i], errors[i] = (ERROR, err) if err else (OK, "")
        except (asyncio.TimeoutError, TimeoutError):
            outcome[i], errors[i] = TIMEOUT, f"no complete response within {config.timeout:g} s"
        except OSError as exc:
            outcome[i], errors[i] = ERROR, exc.strerror or str(exc)
        last_end[0] = max(last_end[0], time.perf_counter())

    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + schedule[i] - time.perf_counter()
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
                      max(wall, 0.0))


# --- reporting ---------------------------------------------------------------------------------

PERCENTILES = (50, 90, 95, 99, 99.9)


def summarise(result: LoadResult) -> dict:
    """The numbers a user reads: throughput, latency percentiles, SLA violations, schedule keeping.
    Failed requests enter the percentiles as infinitely slow (null in JSON)."""
    cfg = result.config
    n = len(result.scheduled)
    ok = result.outcome == OK
    lat = np.where(ok, result.latency, np.inf)
    violations = int(np.count_nonzero(~ok | (lat > cfg.sla)))
    per_url = {}
    if len(cfg.urls) > 1:
        for url in cfg.urls:
            if url in per_url:
                continue
            mask = np.isin(result.target, [j for j, u in enumerate(cfg.urls) if u == url])
            m_ok = ok[mask]
            per_url[url] = {"requests": int(mask.sum()), "ok": int(m_ok.sum()),
                            "sla_violations": int(np.count_nonzero(~m_ok | (lat[mask] > cfg.sla))),
                            "p50": _finite(np.percentile(lat[mask], 50, method="higher")) if mask.any() else None,
                            "p99": _finite(np.percentile(lat[mask], 99, method="higher")) if mask.any() else None,
                            "mean_body_bytes": float(result.body_bytes[mask][m_ok].mean()) if m_ok.any() else None}
    started = ~np.isnan(result.lag)
    late = int(np.count_nonzero(result.lag[started] > LATE_START))
    span = float(result.scheduled[-1]) if n else 0.0
    pct = {f"p{p:g}": (_finite(np.percentile(lat, p, method="higher")) if n else None) for p in PERCENTILES}
    counts = {k: int(np.count_nonzero(result.outcome == k)) for k in (OK, TIMEOUT, ERROR, DROPPED)}
    errors = sorted({e for e in result.error if e})
    return {
        "url": cfg.urls[0] if len(cfg.urls) == 1 else cfg.urls,
        "rate": cfg.rate,
        "sla_s": cfg.sla,
        "timeout_s": cfg.timeout,
        "seed": result.seed,
        "requests": n,
        **counts,
        "offered_rate": (n - 1) / span if n > 1 and span > 0 else None,
        "throughput": counts[OK] / result.wall_seconds if result.wall_seconds > 0 else None,
        "bytes_per_s": float(result.body_bytes[ok].sum()) / result.wall_seconds if result.wall_seconds > 0 else None,
        "mean_body_bytes": float(result.body_bytes[ok].mean()) if counts[OK] else None,
        "latency_s": {**pct, "mean": float(result.latency[ok].mean()) if counts[OK] else None,
                      "max": _finite(float(lat.max())) if n else None},
        "sla_violations": violations,
        "sla_violation_fraction": violations / n if n else None,
        "start_lag_s": {"p50": _lag(result.lag, 50), "p99": _lag(result.lag, 99),
                        "max": float(np.nanmax(result.lag)) if started.any() else None},
        "late_starts": late,
        "schedule_kept": late <= LATE_FRACTION * max(int(started.sum()), 1) and counts[DROPPED] == 0,
        "wall_seconds": result.wall_seconds,
        "errors": errors[:5],
        **({"per_url": per_url} if per_url else {}),
    }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _lag(lag: np.ndarray, p: float) -> float | None:
    lag = lag[~np.isnan(lag)]
    return float(np.percentile(lag, p)) if lag.size else None


def write_latencies(result: LoadResult, path: str | Path) -> None:
    """One row per request: URL, arrival, start lag, latency, status, bytes, outcome, error."""
    path = Path(path)
    try:
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["request", "url", "scheduled_s", "start_lag_s", "latency_s", "status", "body_bytes",
                        "outcome", "error"])
            urls = result.config.urls
            for i in range(len(result.scheduled)):
                w.writerow([i, urls[result.target[i]], f"{result.scheduled[i]:.6f}", _cell(result.lag[i]), _cell(result.latency[i]),
                            int(result.status[i]), int(result.body_bytes[i]), result.outcome[i], result.error[i]])
    except OSError as exc:
        raise CalmError(f"cannot write {path}: {exc.strerror or exc}") from None


def _cell(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.6f}"


def format_summary(s: dict) -> str:
    """A few human-readable lines, like `wrk` or `ab` print."""
    def ms(x):
        return "failed" if x is None else f"{x * 1e3:.1f} ms"
    lat = s["latency_s"]
    lines = [
        f"{s['requests']} requests to {_urls(s['url'])} at {s['rate']:g}/s (Poisson, seed {s['seed']}): "
        f"{s['ok']} ok, {s['timeout']} timed out, {s['error']} failed, {s['dropped']} dropped",
        f"throughput {_num(s['throughput'])} responses/s, {_num(_div(s['bytes_per_s'], 1e6))} MB/s; "
        f"offered {_num(s['offered_rate'])} requests/s",
        "latency " + ", ".join(f"{k} {ms(v)}" for k, v in lat.items() if k != "mean")
        + f", mean {ms(lat['mean'])}",
        f"SLA {s['sla_s']:g} s: {s['sla_violations']} of {s['requests']} violated "
        f"({100 * (s['sla_violation_fraction'] or 0):.2f}%; timeouts and failures count)",
    ]
    lag = s["start_lag_s"]
    if s["schedule_kept"]:
        lines.append(f"schedule kept: start lag p99 {ms(lag['p99'])}, max {ms(lag['max'])}")
    else:
        lines.append(f"warning: the generator could not keep the schedule: {s['late_starts']} requests started "
                     f"more than {LATE_START * 1e3:g} ms late (p99 lag {ms(lag['p99'])}), {s['dropped']} dropped; "
                     f"lower --rate or raise --max-inflight")
    for url, u in s.get("per_url", {}).items():
        lines.append(f"  {url}: {u['requests']} requests, {u['ok']} ok, {u['sla_violations']} violated, "
                     f"p50 {ms(u['p50'])}, p99 {ms(u['p99'])}")
    for err in s["errors"]:
        lines.append(f"  error: {err}")
    return "\n".join(lines)


def _urls(url: str | list[str]) -> str:
    return url if isinstance(url, str) else f"{len(url)} URLs"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _div(x: float | None, d: float) -> float | None:
    return None if x is None else x / d
