#!/usr/bin/env python3
"""What recording costs a service: its throughput with and without `calm record`, same run.

Services (private instances, scripts/calm_services.py): Redis under redis-benchmark (SET, random
keys over a keyspace, fixed-size values) and PostgreSQL under pgbench (TPC-B-like, 4 clients).
For each backend asked for, runs alternate: the benchmark alone, then the benchmark while
`calm record --children --pid SERVER --backend B` follows the server, PAIRS times; medians of the
throughput and the overhead. Each recorded run also reports what the trace says the observer
cost: the achieved sampling period (mean, p95), calm's CPU and read time per round, and pages
read per round (`calm analyze`'s observer figures), and the service's dirty rate it saw (the hash
backend misses writes of the same bytes: compare with soft-dirty in a guest).

The soft-dirty backend needs a kernel with soft-dirty: run this inside a guest, e.g.
  scripts/calm-vm --memory 3072 -- python scripts/bench_service.py --backend soft-dirty,hash

Usage: python scripts/bench_service.py [--services redis,postgres] [--backend hash]
       [--interval 100ms] [--seconds 10] [--pairs 3] [--nice] [--keys 1000000] [--scale 10]
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from calm.core.argtypes import OneLineErrorParser, duration  # noqa: E402
from calm_services import Postgres, Redis, ServiceError  # noqa: E402


class Bench:
    """One service under its benchmark: `load()` fills it once, `run(seconds)` -> ops/s."""

    name = ""
    unit = ""

    def __init__(self, server) -> None:
        self.server = server

    @property
    def pid(self) -> int:
        return self.server.pid


class RedisBench(Bench):
    name, unit = "redis", "SET/s"
    VALUE = 100  # bytes; redis-benchmark sends the same payload every time
    KEYS = 1_000_000

    def _benchmark(self, requests: int) -> float:
        out = subprocess.run(["redis-benchmark", "-s", str(self.server.socket), "-t", "set", "-n", str(requests),
                              "-c", "4", "-r", str(self.KEYS), "-d", str(self.VALUE), "-q"],
                             capture_output=True, text=True, check=True).stdout
        return float(re.findall(r"SET: ([0-9.]+) requests per second", out)[-1])

    def load(self) -> None:
        self._benchmark(self.KEYS)  # 1M keys: about 130 MiB of keys and values
        self.rate = self._benchmark(100_000)

    def run(self, seconds: float) -> float:
        return self._benchmark(max(10_000, int(self.rate * seconds)))


class PostgresBench(Bench):
    name, unit = "postgres", "tps"
    SCALE = 10

    def load(self) -> None:
        self.server.pgbench_init(scale=self.SCALE)  # 10: about 160 MiB of tables; shared_buffers 128MB

    def run(self, seconds: float) -> float:
        out = subprocess.run(self.server.client("pgbench", "-c", "4", "-j", "2", "-T", str(int(seconds)), "postgres"),
                             capture_output=True, text=True, check=True, cwd=self.server.root).stdout
        return float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)[1])


def recorded(bench: Bench, backend: str, interval: float, seconds: float, nice: bool,
             tmp: Path) -> tuple[float, dict]:
    """The benchmark while calm records the server; (throughput, observer figures of the trace)."""
    from calm.analyzer.service_view import observer_stats
    from calm.trace.reader import Trace

    trace = tmp / f"{bench.name}-{backend}.h5"
    cmd = [sys.executable, "-m", "calm", "record", "--backend", backend, "--children", "--pid", str(bench.pid),
           "--interval", str(interval), "-q", "-f", "-o", str(trace)] + (["--nice"] if nice else [])
    rec = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_samples(trace, rec, 3)
        rate = bench.run(seconds)
    finally:
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=120)
    if rec.returncode:
        raise SystemExit(f"calm record failed: {err}")
    with Trace(trace) as t:
        obs = observer_stats(t)
        resident = t.segment_pss
        info = {"samples": t.n_samples, **obs.to_dict()}
        if resident is not None:
            import numpy as np

            per_sample = np.bincount(t.segment_sample, weights=resident.astype(float), minlength=t.n_samples)
            info["resident_mib"] = float(per_sample.max() * t.page_size / 2**20)
    from calm.replay.trace_map import map_trace

    m = map_trace(trace)  # service pages, each once per sample
    info["dirty_mb_s"] = m.n_events * m.page_size / (m.n_steps * m.step_seconds) / 1e6
    trace.unlink()
    return rate, info


def _wait_for_samples(trace: Path, rec: subprocess.Popen, n: int) -> None:
    from calm.core.errors import CalmError
    from calm.trace.reader import Trace

    while True:
        if rec.poll() is not None:
            raise SystemExit(f"calm record exited: {rec.communicate()[1]}")
        try:
            with Trace(trace) as t:
                if t.n_samples >= n:
                    return
        except (CalmError, RuntimeError, OSError):
            pass
        time.sleep(0.1)


def main() -> None:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", default="redis,postgres")
    parser.add_argument("--backend", default="hash", help="comma-separated: hash, soft-dirty")
    parser.add_argument("--interval", type=duration(), default=0.1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--nice", action="store_true", help="record with calm record --nice")
    parser.add_argument("--keys", type=int, default=RedisBench.KEYS, help="Redis keyspace (default 1M)")
    parser.add_argument("--scale", type=int, default=PostgresBench.SCALE, help="pgbench scale (default 10)")
    args = parser.parse_args()
    RedisBench.KEYS, PostgresBench.SCALE = args.keys, args.scale
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"kernel {platform.release()}, load {os.getloadavg()[0]:.1f}; interval {args.interval:g} s, "
          f"{args.seconds:g} s per run, {args.pairs} pairs, {args.keys:,} Redis keys, pgbench scale "
          f"{args.scale}{', --nice' if args.nice else ''}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="calm-bench-service-") as tmp:
        for name in args.services.split(","):
            server = Redis() if name == "redis" else Postgres(shared_buffers="128MB", prefix="calm-bench-pg-")
            with server:
                bench = RedisBench(server) if name == "redis" else PostgresBench(server)
                bench.load()
                for backend in args.backend.split(","):
                    alone, with_calm, observed = [], [], []
                    for _ in range(args.pairs):
                        alone.append(bench.run(args.seconds))
                        rate, obs = recorded(bench, backend, args.interval, args.seconds, args.nice, Path(tmp))
                        with_calm.append(rate)
                        observed.append(obs)
                    a, w = statistics.median(alone), statistics.median(with_calm)
                    o = observed[len(observed) // 2]
                    rows.append((name, backend, a, w, o))
                    print(json.dumps({"service": name, "backend": backend, "alone": alone, "recorded": with_calm,
                                      "observer": observed}), flush=True)
    print("| service | backend | alone "
          "| recorded | overhead | period mean / p95 | calm CPU per round | read per round | pages read per round | resident | dirty rate seen |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, backend, a, w, o in rows:
        unit = "SET/s" if name == "redis" else "tps"
        print(f"| {name} | {backend} | {a:,.0f} {unit} | {w:,.0f} {unit} | {(1 - w / a) * 100:.1f}% | "
              f"{o['period_mean'] * 1e3:.0f} / {o['period_p95'] * 1e3:.0f} ms | {o['cpu_mean'] * 1e3:.1f} ms | "
              f"{o['read_mean'] * 1e3:.1f} ms | {o['pages_read_mean']:,.0f} | {o.get('resident_mib', 0):.0f} MiB | "
              f"{o['dirty_mb_s']:.1f} MB/s |")


if __name__ == "__main__":
    try:
        main()
    except ServiceError as exc:
        raise SystemExit(f"bench_service: error: {exc}")
