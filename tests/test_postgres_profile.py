"""PostgreSQL profiled end to end as a service: Debian's postgresql started by the test (as the
postgres user, on a unix socket in a temporary directory), pgbench -c 4 under load, recorded with
--children, analysed and replayed with the defaults.

The service's footprint must agree with an independent decode of the trace (plain h5py: every
dirty page named by what backs it, a MAP_SHARED page as (device, inode, offset), a private one as
(process, address)), shared buffers counted once; the default replay must run. Skips when PostgreSQL
is not installed (scripts/install-deps installs it), except under CI=true.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.collector_helpers import REPO, calm

sys.path.insert(0, str(REPO / "scripts"))
from calm_services import Postgres, postgres_installed  # noqa: E402

pytestmark = pytest.mark.slow

SECONDS, INTERVAL = 10, 0.5


@pytest.fixture(autouse=True)
def _postgres_available():
    if postgres_installed():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("PostgreSQL is not installed in CI (scripts/install-deps installs it)")
    pytest.skip("PostgreSQL not installed (run scripts/install-deps)")


def decode_service_pages(path: Path) -> tuple[int, int, int]:
    """(distinct service pages, of which shared, distinct (process, address) pairs) of a trace,
    decoded with h5py alone, independently of calm's reader."""
    with h5py.File(path, "r") as f:
        page = int(f.attrs["page_size"])
        seg_end = f["samples/segment_end"][:].astype(np.int64)
        proc = f["segments/process"][:]
        ev_end = f["segments/event_end"][:]
        deltas = f["events/vpn_delta"][:]
        m = {c: f[f"maps/{c}"][:] for c in ("process", "sample", "start", "end", "offset", "inode", "dev")}
        perms = [p.decode() if isinstance(p, bytes) else p for p in f["maps/perms"][:]]
    seg_sample = np.repeat(np.arange(seg_end.size), np.diff(seg_end, prepend=0))
    service, shared, naive = set(), set(), set()
    for g in range(proc.size):
        lo = int(ev_end[g - 1]) if g else 0
        vpns = np.cumsum(deltas[lo:int(ev_end[g])]).astype(np.int64)
        if vpns.size == 0:
            continue
        row, s = int(proc[g]), int(seg_sample[g])
        rows = np.flatnonzero(m["process"] == row)
        snaps = np.unique(m["sample"][rows])
        valid = snaps[snaps <= s]
        snap = valid.max() if valid.size else snaps.min()
        regions = rows[m["sample"][rows] == snap]
        for v in vpns.tolist():
            naive.add((row, v))
            addr = v * page
            hit = regions[(m["start"][regions] <= addr) & (addr < m["end"][regions])]
            if hit.size and perms[int(hit[0])][3] == "s":
                r = int(hit[0])
                key = ("shared", int(m["dev"][r]), int(m["inode"][r]),
                       (int(m["offset"][r]) + addr - int(m["start"][r])) // page)
                shared.add(key)
            else:
                key = ("private", row, v)
            service.add(key)
    return len(service), len(shared), len(naive)


def test_postgres_is_one_service(tmp_path):
    with Postgres(shared_buffers="64MB", prefix="calm-pg-service-test-") as pg:
        pg.pgbench_init(scale=4)
        load = pg.client_popen("pgbench", "-c", "4", "-T", "600", "postgres",
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        trace = tmp_path / "pg.h5"
        try:
            rec = calm("record", "--backend", "hash", "--children", "--pid", str(pg.pid), "--interval",
                       str(INTERVAL), "--duration", str(SECONDS), "-o", str(trace), timeout=300)
        finally:
            load.send_signal(signal.SIGINT)
            load.wait(60)
        assert rec.returncode == 0, rec.stderr
        assert "sampling period achieved" in rec.stderr and "misses a write" in rec.stderr

    # processes named by role, the binary as run
    summary_run = calm("analyze", str(trace), "-o", str(tmp_path / "analysis"), "--json", "--no-plots",
                       check=True, timeout=300)
    summary = json.loads(summary_run.stdout)
    titles = {p["title"] for p in summary["processes"]}
    assert {"postgres: checkpointer", "postgres: background writer", "postgres: walwriter"} <= titles
    assert any(t.startswith("postgres: postgres postgres [local]") for t in titles), titles
    assert summary["service"]["shared_pages"] > 0 and summary["shared_objects"]
    main_shm = max(summary["shared_objects"], key=lambda o: o["dirtied_pages"])
    assert len(main_shm["mapped_by"]) >= 6  # the postmaster, its helpers and the 4 backends

    # the footprint is the service's: within 15% of an independent decode, shared buffers once
    decoded, decoded_shared, naive = decode_service_pages(trace)
    footprint = summary["service"]["dirtied_pages"]
    assert abs(footprint - decoded) <= 0.15 * decoded, (footprint, decoded)
    assert abs(summary["service"]["shared_pages"] - decoded_shared) <= 0.15 * decoded_shared
    assert summary["service"]["shared_pages"] <= 64 * 2**20 // 4096 * 1.1  # at most the buffers, roughly
    assert naive >= decoded  # naming pages per process can only count more
    assert summary["observer"]["period_mean"] > 0 and summary["observer"]["cpu_mean"] > 0
    assert summary["service"]["resident_mib"]["max"] * 2**20 / 4096 >= summary["service"]["shared_pages"]

    # the default replay runs: the service's own RAM first, then the slides' scenarios
    replay = calm("replay", str(trace), "-o", str(tmp_path / "replay"), "--no-plots", check=True, timeout=600)
    results = json.loads((tmp_path / "replay" / "results.json").read_text())
    service = results["scenarios"][0]
    assert service["origin"] == "service" and len(service["results"]) == 5
    assert service["ram_bytes"] >= footprint * 4096
    assert "calm" in replay.stdout
