"""The trace writer and reader: exact round trips, streaming in chunks, damaged and foreign files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from calm.core.errors import CalmError
from calm.collector.procfs import read_maps
from calm.trace.reader import Trace
from calm.trace.writer import TraceWriter
from tests.collector_helpers import REPO, wait_for_file

ATTRS = dict(page_size=4096, backend="hash", interval=0.1, kernel_release="test", hostname="h",
             start_time="2026-01-01T00:00:00+00:00", start_time_unix=0.0, start_monotonic=0.0,
             tool_version="test", command=["x"])


def _write_random(path, n_samples=60, seed=0, flush_every=7):
    rng = np.random.default_rng(seed)
    writer = TraceWriter(path, force=True, attrs=ATTRS)
    rows = [writer.open_process(pid=100 + i, ppid=1, start_time_unix=1.0, name=f"p{i}",
                                cmdline=["p", str(i)], exe="/bin/p") for i in range(3)]
    truth = []
    for s in range(n_samples):
        per = {}
        for row in rows:
            if row == 2 and s >= 40:
                continue  # exited
            n = int(rng.integers(0, 400))
            base = np.uint64(0x7F0000000 + row * 10**6)
            vpns = np.unique(rng.integers(0, 50_000, n).astype(np.uint64) + base)
            per[row] = (vpns, 1000 + s)
            truth.append((s, row, vpns))
        writer.add_sample(s * 0.1, s * 0.1 + 0.09, per)
        if s == 40:
            writer.close_process(2, exit_sample=40)
        if s % flush_every == 0:
            writer.flush()
    writer.add_maps(0, 0, read_maps(os.getpid()))
    writer.close(status="complete", end_reason="test")
    return truth


@pytest.mark.parametrize("max_events", [1, 500, 1 << 22])
def test_round_trip_in_chunks(tmp_path, max_events):
    path = tmp_path / "t.h5"
    truth = _write_random(path)
    with Trace(path) as trace:
        got = []
        for chunk in trace.iter_chunks(max_events=max_events):
            bounds = np.concatenate(([0], np.cumsum(chunk.segment_n_dirty, dtype=np.int64)))
            for g, (s, row) in enumerate(zip(chunk.segment_sample, chunk.segment_process)):
                got.append((int(s), int(row), chunk.vpn[bounds[g]:bounds[g + 1]]))
                assert np.all(chunk.event_sample[bounds[g]:bounds[g + 1]] == s)
        assert len(got) == len(truth)
        for (s, row, vpns), (s2, row2, vpns2) in zip(truth, got):
            assert (s, row) == (s2, row2)
            np.testing.assert_array_equal(vpns, vpns2)
        assert trace.n_samples == 60
        assert trace.processes[2].exit_sample == 40 and trace.processes[2].last_sample == 39
        assert trace.processes[0].cmdline == ["p", "0"]
        assert trace.info.command == ["x"] and trace.info.status == "complete"
        assert len(trace.map_snapshots(0)) == 1


def test_plain_h5py_can_decode_it(tmp_path):
    """The FORMAT.md recipe: cumsum of a segment's deltas gives its page numbers."""
    path = tmp_path / "t.h5"
    truth = _write_random(path, n_samples=5)
    with h5py.File(path, "r") as f:
        event_end = f["segments/event_end"][:]
        deltas = f["events/vpn_delta"][:]
        g = 4
        vpns = np.cumsum(deltas[event_end[g - 1]:event_end[g]])
    np.testing.assert_array_equal(vpns, truth[g][2])


def test_half_written_tail_is_trimmed(tmp_path):
    """Rows appended without their dependencies (as a kill mid-flush leaves them) are ignored."""
    path = tmp_path / "t.h5"
    _write_random(path, n_samples=20)
    with h5py.File(path, "a") as f:
        for name, value in (("t_start", 9.0), ("t_end", 9.1), ("segment_end", 10**6)):
            ds = f["samples"][name]
            ds.resize((ds.shape[0] + 1,))
            ds[-1] = value
    with Trace(path) as trace:
        assert trace.n_samples == 20 and trace.trimmed
        assert sum(1 for _ in trace.iter_samples()) == 20


def test_a_writer_killed_at_random_moments_leaves_a_readable_file(tmp_path):
    script = (
        "import sys, numpy as np\n"
        "from calm.trace.writer import TraceWriter\n"
        "from tests.test_trace_format import ATTRS\n"
        "w = TraceWriter(sys.argv[1], force=True, attrs=ATTRS)\n"
        "r = w.open_process(pid=1, ppid=0, start_time_unix=0.0, name='a', cmdline=[], exe='')\n"
        "rng = np.random.default_rng(0)\n"
        "s = 0\n"
        "while True:\n"
        "    w.add_sample(s, s + 1, {r: (np.unique(rng.integers(0, 10**6, 3000)).astype(np.uint64), 5)})\n"
        "    s += 1\n"
        "    if s % 3 == 0: w.flush()\n"
        "    if s == 30: open(sys.argv[1] + '.ready', 'w').write('1')\n"
    )
    rng = np.random.default_rng(1)
    for attempt in range(15):
        path = tmp_path / f"k{attempt}.h5"
        proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=REPO)
        wait_for_file(tmp_path / f"k{attempt}.h5.ready", proc)  # 30 samples written, 27 of them flushed
        time.sleep(float(rng.uniform(0, 0.25)))  # not a wait: the kill lands at a random moment
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Trace(path) as trace:
            assert trace.n_samples >= 27
            n = sum(v.size for _, per in trace.iter_samples() for v in per.values())
            assert n == trace.n_events > 0


def test_a_writer_killed_before_its_superblock_reached_disk_is_read_in_full(tmp_path):
    """The state a SIGKILL in the middle of an HDF5 flush leaves (seen in CI): chunks and their
    index from the last flush on disk, the superblock (with its end-of-allocation address) still
    the one of the flush before. Plain h5py cannot read the last chunk; the reader can, and
    reads every flushed sample, without changing the file."""
    path = tmp_path / "t.h5"
    script = (
        "import sys, time, numpy as np\n"
        "from calm.trace.writer import TraceWriter\n"
        "from tests.test_trace_format import ATTRS\n"
        "w = TraceWriter(sys.argv[1], force=True, attrs=ATTRS)\n"
        "r = w.open_process(pid=1, ppid=0, start_time_unix=0.0, name='a', cmdline=[], exe='')\n"
        "rng = np.random.default_rng(0)\n"
        "for s in range(40):\n"
        "    w.add_sample(s, s + 1, {r: (np.unique(rng.integers(0, 10**6, 3000)).astype(np.uint64), 5)})\n"
        "    if s == 19:\n"
        "        w.flush()\n"
        "        open(sys.argv[1] + '.sb', 'wb').write(open(sys.argv[1], 'rb').read(48))\n"
        "w.flush()\n"
        "open(sys.argv[1] + '.ready', 'w').write('1')\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=REPO)
    wait_for_file(tmp_path / "t.h5.ready", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open(path, "r+b") as f:
        f.write((tmp_path / "t.h5.sb").read_bytes())  # the earlier superblock, as if not yet rewritten
    damaged = path.read_bytes()
    with h5py.File(path, "r") as f, pytest.raises(OSError, match="addr overflow"):
        f["events/vpn_delta"][:]
    with Trace(path) as trace:
        assert trace.eoa_repaired
        assert trace.n_samples == 40
        n = sum(v.size for _, per in trace.iter_samples() for v in per.values())
        assert n == trace.n_events == int(trace.segment_n_dirty.sum()) > 0
    assert path.read_bytes() == damaged


def test_not_hdf5(tmp_path):
    path = tmp_path / "x.h5"
    path.write_text("hello")
    with pytest.raises(CalmError, match="not an HDF5 file"):
        Trace(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "t.h5"
    _write_random(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CalmError):
        Trace(cut)


def test_hdf5_but_not_a_trace(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(CalmError, match="not a calm trace"):
        Trace(path)


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "t.h5"
    _write_random(path, n_samples=2)
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(CalmError, match="trace format 99"):
        Trace(path)


def test_missing_trace(tmp_path):
    with pytest.raises(CalmError, match="does not exist"):
        Trace(tmp_path / "nope.h5")


def test_two_snapshots_at_one_sample_read_as_the_later_one(tmp_path):
    """The recorder stores the baseline's map at sample 0 and, when the first round finds the map
    changed (ld.so's RELRO mprotect splits a region), another one at sample 0: the reader must
    give the later map, not both merged (their overlap halved every page's probability)."""
    from calm.trace.maps import MapsTable

    def table(regions):
        return MapsTable(np.array([r[0] for r in regions], dtype=np.uint64),
                         np.array([r[1] for r in regions], dtype=np.uint64), [r[2] for r in regions],
                         np.zeros(len(regions), dtype=np.uint64), np.zeros(len(regions), dtype=np.uint64),
                         ["/bin/p"] * len(regions))

    path = tmp_path / "m.h5"
    writer = TraceWriter(path, force=True, attrs=ATTRS)
    row = writer.open_process(pid=1, ppid=0, start_time_unix=0.0, name="p", cmdline=[], exe="/bin/p")
    vsyscall = (0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, "--xp")  # above 2**63: compared unsigned
    writer.add_maps(row, 0, table([(0x1000, 0x3000, "rw-p"), vsyscall]))
    writer.add_maps(row, 0, table([(0x1000, 0x2000, "r--p"), (0x2000, 0x3000, "rw-p"), vsyscall]))
    writer.add_sample(0.0, 1.0, {row: (np.array([1, 2], dtype=np.uint64), 2)})
    writer.close(status="complete", end_reason="test")
    with Trace(path) as trace:
        snapshots = trace.map_snapshots(row)
    assert [s for s, _ in snapshots] == [0]
    assert snapshots[0][1].perms == ["r--p", "rw-p", "--xp"]
