"""What `calm load` reports: throughput, latency percentiles, SLA violations and how well the
schedule was kept; and every request's latency as CSV."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from calm.core.errors import CalmError
from calm.core.paths import private_file

from calm.workloads.loadgen.engine import DROPPED, ERROR, LATE_FRACTION, LATE_START, OK, TIMEOUT, LoadResult


# --- reporting ---------------------------------------------------------------------------------

PERCENTILES = (50, 90, 95, 99, 99.9)
PER_URL_LINES = 10  # the most requested URLs in the human summary; --json has them all


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
        first: dict[str, int] = {}  # URL -> its id; a URL given several times is one URL
        for url in cfg.urls:
            first.setdefault(url, len(first))
        url_id = np.array([first[u] for u in cfg.urls])[result.target]
        for url, i in first.items():  # one pass per distinct URL (a query log has thousands)
            mask = url_id == i
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
        "start_monotonic": result.start_monotonic,
        "errors": errors[:5],
        **({"per_url": per_url} if per_url else {}),
    }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _lag(lag: np.ndarray, p: float) -> float | None:
    lag = lag[~np.isnan(lag)]
    return float(np.percentile(lag, p)) if lag.size else None


def write_latencies(result: LoadResult, path: str | Path, *, force: bool = False) -> None:
    """One row per request: URL, arrival, start lag, latency, status, bytes, outcome, error.
    Private and never through a symlink (calm.core.paths)."""
    path = Path(path)
    try:
        with private_file(path, force=force, text=True, newline="") as f:
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
    per_url = sorted(s.get("per_url", {}).items(), key=lambda kv: -kv[1]["requests"])
    for url, u in per_url[:PER_URL_LINES]:
        lines.append(f"  {url}: {u['requests']} requests, {u['ok']} ok, {u['sla_violations']} violated, "
                     f"p50 {ms(u['p50'])}, p99 {ms(u['p99'])}")
    if len(per_url) > PER_URL_LINES:
        lines.append(f"  ... and {len(per_url) - PER_URL_LINES} more URLs (every one in --json)")
    for err in s["errors"]:
        lines.append(f"  error: {err}")
    return "\n".join(lines)


def _urls(url: str | list[str]) -> str:
    return url if isinstance(url, str) else f"{len(url)} URLs"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _div(x: float | None, d: float) -> float | None:
    return None if x is None else x / d
