"""Format 1.1's service part: written by the real recorder, readable without it (a 1.0 trace, made
here by removing exactly what 1.1 added from a real recording), and service pages counted once in
both."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from calm.analyzer import analyze
from calm.replay.trace_map import map_trace
from calm.trace import format as tf
from calm.trace.reader import Trace
from calm.trace.service import ServiceSpace
from tests.collector_helpers import calm
from tests.test_replay_service import _service_trace


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rec")
    out = tmp / "r.h5"
    calm("record", "--backend", "hash", "--interval", "0.1", "--duration", "2", "-q", "-o", str(out), "--",
         "python3", "-m", "calm.workloads.groundtruth", "--pages", "256", check=True)
    return out


def test_recorder_writes_the_service_part(recorded):
    with h5py.File(recorded, "r") as f:
        assert int(f.attrs["format_version"]) == 1 and int(f.attrs["format_minor"]) == tf.FORMAT_MINOR
        assert f.attrs["shared_writes"] == tf.SHARED_READER  # the hash backend
        notes = json.loads(f.attrs["notes"])
        assert any("misses a write that leaves a page's bytes" in n for n in notes)
        for group, columns in tf.SINCE_1_1.items():
            for c in columns:
                assert f[f"{group}/{c}"].shape[0] > 0, (group, c)
        assert (f["maps/dev"][:] > 0).any()  # file-backed regions have a device
        assert (f["samples/round_cpu_s"][:] > 0).all() and (f["samples/round_pages_read"][:] > 0).all()
        assert (f["segments/pss"][:] > 0).all()
    with Trace(recorded) as t:
        assert t.info.version == "1.1" and not t.info.writer_known
        assert t.round_costs is not None and t.segment_pss is not None


def _as_1_0(src, dst):
    """A copy of `src` without anything format 1.1 added: what calm 1.0 wrote."""
    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        for k, v in a.attrs.items():
            if k not in ("format_minor", "shared_writes", "notes", "nice"):
                b.attrs[k] = v
        for group in a:
            g = b.create_group(group)
            for name in a[group]:
                if name not in tf.SINCE_1_1.get(group, ()):
                    a.copy(a[group][name], g, name=name)


def test_a_1_0_trace_is_read_analysed_and_replayed(recorded, tmp_path):
    old = tmp_path / "old.h5"
    _as_1_0(recorded, old)
    with Trace(old) as t:
        assert t.info.version == "1.0" and t.round_costs is None and t.segment_pss is None
        assert all(p.title == "" for p in t.processes)
        with Trace(recorded) as new:
            assert t.n_samples == new.n_samples and t.n_events == new.n_events
    a = analyze(old)
    assert a.observer is None and a.timeline.resident_pages is None
    assert len(a.pages) == len(analyze(recorded).pages)
    assert map_trace(old).footprint == len(a.pages)
    r = calm("analyze", str(old), "-o", str(tmp_path / "a"), "--no-plots", check=True)
    assert "observer:" not in r.stdout


def test_shared_pages_once_in_a_1_0_trace_too(tmp_path):
    """Without maps/dev, (inode, path) names a shared object."""
    new, old = tmp_path / "svc.h5", tmp_path / "svc-1.0.h5"
    _service_trace(new, samples=20)
    _as_1_0(new, old)
    for path in (new, old):
        with Trace(path) as t:
            space = ServiceSpace(t)
            assert len(space.objects) == 1 and space.objects[0].mapped_by == {0, 1}
        a = analyze(path)
        shared = a.is_shared(a.pages.process)
        assert 0 < shared.sum() <= 256  # once, though both processes wrote them
    assert len(analyze(new).pages) == len(analyze(old).pages)


def test_a_newer_minor_is_read_a_newer_major_refused(recorded, tmp_path):
    import shutil

    newer = tmp_path / "newer.h5"
    shutil.copy(recorded, newer)
    with h5py.File(newer, "r+") as f:
        f.attrs["format_minor"] = 7
    with Trace(newer) as t:
        assert t.info.version == "1.7"
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = 2
    r = calm("analyze", str(newer), "-o", str(tmp_path / "x"))
    assert r.returncode == 1 and "uses trace format 2" in r.stderr


def test_nice_is_recorded_and_the_period_achieved_said(tmp_path):
    out = tmp_path / "nice.h5"
    r = calm("record", "--backend", "hash", "--nice", "5", "--interval", "0.1", "--duration", "1.5", "--json",
             "-o", str(out), "--", "python3", "-m", "calm.workloads.groundtruth", "--pages", "64", check=True)
    assert "at nice +5" in r.stderr and "sampling period achieved" in r.stderr
    summary = json.loads(r.stdout)
    assert summary["nice"] == 5 and summary["period_mean_s"] > 0 and summary["period_p95_s"] >= summary["period_mean_s"] * 0.5
    with Trace(out) as t:
        assert t.info.nice == 5
    bad = calm("record", "--nice", "0", "-o", str(tmp_path / "x.h5"), "--", "true")
    assert bad.returncode == 2 and "--nice" in bad.stderr
