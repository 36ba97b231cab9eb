"""`calm record --region`: only the mappings whose path matches are read, with whatever backend the
kernel offers (soft-dirty where it has it, hash here); tests/kernel runs the same checks on a
soft-dirty kernel. The target (tests/region_target.py) writes a memfd and anonymous memory side
by side, as a QEMU process holds guest RAM next to its own heap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calm.trace.reader import Trace
from tests import region_target
from tests.collector_helpers import REPO, calm, one_line_error, stop, wait_for_file


@pytest.fixture()
def target(tmp_path):
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "region_target.py"), str(ready)])
    try:
        wait_for_file(ready, proc, timeout=60)
        yield proc, json.loads(ready.read_text())
    finally:
        stop(proc)


def _record(tmp_path: Path, pid: int, *regions: str) -> Path:
    out = tmp_path / "region.h5"
    args = [a for r in regions for a in ("--region", r)]
    calm("record", "--pid", str(pid), *args, "--interval", "100ms", "--duration", "2s", "-q",
         "-o", str(out), check=True, timeout=120)
    return out


def _dirty_pages(out: Path) -> tuple[np.ndarray, Trace]:
    trace = Trace(out)
    parts = [v for _, per in trace.iter_samples() for v in per.values()]
    return (np.unique(np.concatenate(parts)) if parts else np.empty(0, np.uint64)), trace


def test_region_records_only_the_matching_mapping(tmp_path, target):
    proc, where = target
    out = _record(tmp_path, proc.pid, "memfd:" + region_target.MEMFD_NAME)
    dirty, trace = _dirty_pages(out)
    with trace:
        first = where["memfd_start"] // where["page"]
        assert dirty.tolist() == [first + i for i in region_target.HOT_PAGES]
        assert trace.info.regions == ("memfd:" + region_target.MEMFD_NAME,)
        residency = trace.residency()
        assert residency is not None  # the runs cover the memfd mapping only
        assert int(residency["pages"].sum()) == region_target.MEMFD_PAGES
        assert int(residency["start_vpn"].min()) == first


def test_anon_pattern_records_mappings_without_a_path(tmp_path, target):
    proc, where = target
    out = _record(tmp_path, proc.pid, "[anon]")
    dirty, trace = _dirty_pages(out)
    trace.close()
    page = where["page"]
    anon = where["anon_start"] // page + np.arange(region_target.ANON_PAGES)
    memfd = where["memfd_start"] // page + np.arange(region_target.MEMFD_PAGES)
    assert np.isin(anon, dirty).all()
    assert not np.isin(memfd, dirty).any()


def test_region_patterns_add_up(tmp_path, target):
    proc, where = target
    out = _record(tmp_path, proc.pid, "[anon]", "memfd:" + region_target.MEMFD_NAME)
    dirty, trace = _dirty_pages(out)
    trace.close()
    page = where["page"]
    hot = where["memfd_start"] // page + np.array(region_target.HOT_PAGES)
    assert np.isin(hot, dirty).all()
    assert np.isin(where["anon_start"] // page, dirty)


def test_region_matching_nothing_is_refused_and_writes_nothing(tmp_path, target):
    proc, _ = target
    out = tmp_path / "none.h5"
    result = calm("record", "--pid", str(proc.pid), "--region", "no-such-mapping", "--duration", "1s",
                  "-o", str(out))
    assert result.returncode == 1
    line = one_line_error(result)
    assert f"pid {proc.pid} has no mapping matching --region 'no-such-mapping'" in line
    assert not out.exists()


def test_empty_region_is_a_usage_error(tmp_path):
    result = calm("record", "--region", "", "-o", str(tmp_path / "x.h5"), "--", "true")
    assert result.returncode == 2
    assert "--region" in result.stderr and "empty pattern" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
