"""Shared by the host (tests/test_apache_profile.py) and in-guest (tests/kernel/test_guest_apache.py)
Apache tests: run scripts/profile-apache and check what it produced."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil

from calm.trace.reader import Trace

REPO = Path(__file__).resolve().parent.parent
PROFILE = REPO / "scripts" / "profile-apache"
sys.path.insert(0, str(REPO / "scripts"))

from calm_apache import installed  # noqa: E402,F401  (re-exported for the tests)


def profile(out: Path, *extra: str, rate: float, duration: float, interval: float,
            timeout: float = 240) -> subprocess.CompletedProcess:
    """Runs scripts/profile-apache (never installing: tests get apache2 from scripts/install-deps)."""
    return subprocess.run([sys.executable, str(PROFILE), "-o", str(out), "--no-install", "--rate", str(rate),
                           "--duration", str(duration), "--interval", str(interval), *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def httpd_of(stdout: str) -> tuple[int, Path]:
    """(pid of the parent httpd, its runtime directory) from the script's first line."""
    m = re.search(r"apache: httpd (\d+) .* \(config (\S+)/httpd\.conf\)", stdout)
    assert m, stdout
    return int(m[1]), Path(m[2])


def assert_stopped(pid: int, root: Path) -> None:
    try:
        proc = psutil.Process(pid)
        assert proc.status() == psutil.STATUS_ZOMBIE or "apache2" not in proc.name(), "httpd still running"
    except psutil.NoSuchProcess:
        pass
    assert not root.exists(), f"runtime directory {root} left behind"


def check_profile(out: Path, stdout: str, *, backend: str, min_samples: float, min_requests: float,
                  scenarios: set[str]) -> None:
    """The trace holds the parent and >= 4 prefork workers, several of which dirtied pages, and only
    httpd's descendants; the load reached Apache; the analysis and the replay table exist and agree."""
    pid, root = httpd_of(stdout)
    assert_stopped(pid, root)
    for line in ("trace:", "analysis:", "replay:"):
        assert line in stdout
    with Trace(out / "apache.h5") as trace:
        assert trace.info.backend == backend
        assert trace.info.status == "complete"
        assert trace.n_samples >= min_samples, trace.n_samples
        parent = [p for p in trace.processes if p.pid == pid]
        assert parent and parent[0].name == "apache2"
        workers = [p for p in trace.processes if p.ppid == pid and p.name == "apache2"]
        assert len(workers) >= 4, [(p.pid, p.name) for p in trace.processes]
        dirty = {p.pid: int(trace.segment_n_dirty[trace.segment_process == p.row].sum()) for p in workers}
        assert sum(n > 0 for n in dirty.values()) >= 2, dirty
        # (CGI children live ~10 ms, far below the interval: whether a round sees one is luck, so
        # they are not required; any that were seen must hang off the recorded tree)
        assert all(any(q.pid == p.ppid for q in trace.processes) for p in trace.processes if p.pid != pid)
        n_samples = trace.n_samples

    load = json.loads((out / "load.json").read_text())
    ok, requests = load["ok"], load["requests"]
    assert requests >= min_requests and ok >= 0.9 * requests, load
    assert len((out / "httpd-access.log").read_text().splitlines()) >= ok
    pages = {url.split("/", 3)[3] for url, s in load["per_url"].items() if s["ok"] > 0}
    assert pages >= {"", "cgi-bin/dynamic.cgi?lines=400", "status.shtml", "blob-128k.bin"}, pages

    summary = json.loads((out / "analysis" / "summary.json").read_text())
    assert summary["backend"] == backend and summary["samples"] == n_samples
    with (out / "analysis" / "pages.csv").open() as f:
        assert sum(1 for _ in f) > 10

    rows = list(csv.DictReader((out / "replay" / "results.csv").open()))
    assert {r["scenario"] for r in rows} == scenarios
    assert {r["algorithm"] for r in rows} == {"calm", "clark", "xen", "qemu", "fixed"}
    assert all(np.isfinite(float(r["cost_s"])) for r in rows)
    assert "algorithm" in stdout and "calm" in stdout
