"""Damaged traces (issue 12): 20 SIGKILLs of `calm record` at random moments, and 50 single-byte
flips and 10 truncations of a real trace through analyze, replay and report.

The counts are printed (run with -s to see them); the README's RELIABILITY section quotes them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from calm.trace.reader import Trace
from tests import fault_campaign
from tests.collector_helpers import REPO, start_workload, stop, wait_for_file
from tests.fault_helpers import run_calm

KILLS = 20
FLIPS = 50
TRUNCATIONS = 10


@pytest.fixture(scope="module")
def real_trace(tmp_path_factory):
    """A real recording: a two-phase workload with its maps, processes and a few hundred KiB."""
    folder = tmp_path_factory.mktemp("real")
    path = folder / "real.h5"
    cmd = [sys.executable, "-m", "calm.workloads.groundtruth", "--pages", "1024", "--interval", "0.05",
           "--profile", "phases:1:zipf:1.1:0.9/uniform:0.05", "--duration", "3", "--seed", "3"]
    result = run_calm("record", "-q", "--backend", "hash", "--interval", "0.05", "-o", str(path), "--", *cmd)
    assert result.returncode == 0, result.stderr
    return path


def test_flips_and_truncations_through_every_reader(real_trace, tmp_path):
    campaign = fault_campaign.run(real_trace, tmp_path, n_flips=FLIPS, n_cuts=TRUNCATIONS, seed=12)
    print(f"\nfault campaign (flips {FLIPS}, truncations {TRUNCATIONS}, seed 12): {campaign.summary()}")
    assert campaign.tries == 3 * (FLIPS + TRUNCATIONS)
    assert not campaign.failures, "\n".join(campaign.failures)


def test_random_sigkills_keep_every_flushed_sample(tmp_path):
    """SIGKILL `calm record` at a random moment after its trace appeared: the trace opens, holds
    every sample up to about a second before the kill (flushes land at least once a second), and
    its samples decode to as many events as its index says."""
    workload, _ = start_workload(tmp_path, pages=512, interval=0.05, profile="uniform:0.2")
    rng = np.random.default_rng(20)
    held = []
    try:
        for attempt in range(KILLS):
            out = tmp_path / f"k{attempt}.h5"
            rec = subprocess.Popen([sys.executable, "-m", "calm", "record", "-q", "--backend", "hash", "--pid",
                                    str(workload.pid), "--interval", "0.05", "-o", str(out)], cwd=REPO)
            try:
                wait_for_file(out, rec, timeout=60)
                time.sleep(float(rng.uniform(0, 2.5)))  # the moment of the kill is what varies
                killed_at = time.monotonic()
                rec.send_signal(signal.SIGKILL)
            finally:
                rec.kill()
                rec.wait(30)
            with h5py.File(out, "r") as f:
                start = float(f.attrs["start_monotonic"])
            with Trace(out) as trace:
                assert trace.n_samples >= 1
                assert trace.t_end[-1] >= killed_at - start - 1.5, (attempt, trace.t_end[-1], killed_at - start)
                n = sum(v.size for _, per in trace.iter_samples() for v in per.values())
                assert n == trace.n_events
                held.append(trace.n_samples)
    finally:
        stop(workload)
    print(f"\nSIGKILLs: {KILLS} tries, {len(held)} traces opened with every flushed sample "
          f"({min(held)}-{max(held)} samples)")


def _heap_collection_of(path, dataset: str, row: int) -> tuple[int, int]:
    """(address, size) of the HDF5 global heap collection that holds row `row` of a string dataset."""
    import struct
    import zlib

    with h5py.File(path, "r") as f:
        dsid = f[dataset].id
        chunk = (row // f[dataset].chunks[0]) * f[dataset].chunks[0]
        mask, stored = dsid.read_direct_chunk((chunk,))
    body = zlib.decompress(stored) if not mask & 1 else stored
    address = struct.unpack_from("<Q", body, (row - chunk) * 16 + 4)[0]
    with open(path, "rb") as f:
        f.seek(address)
        header = f.read(16)
    assert header[:4] == b"GCOL"
    return address, struct.unpack_from("<Q", header, 8)[0]


@pytest.mark.parametrize("command", fault_campaign.READERS)
def test_a_damaged_string_heap_does_not_hang_the_readers(real_trace, tmp_path, command):
    """The state a full disk left in the middle of a flush (seen with older calm versions): the
    heap collection holding the last memory-map paths has its header but not its body. HDF5 loops
    forever reading it; the readers must instead finish, with what lies before it."""
    damaged = tmp_path / "damaged.h5"
    data = bytearray(real_trace.read_bytes())
    with h5py.File(real_trace, "r") as f:
        last = f["maps/path"].shape[0] - 1
    address, size = _heap_collection_of(real_trace, "maps/path", last)
    data[address + 16:address + size] = bytes(size - 16)
    damaged.write_bytes(bytes(data))
    out = tmp_path / ("report.html" if command == "report" else "out")
    outcome = run_calm(*fault_campaign.reader_args(command, damaged, out))
    # the rows before the damage are read (a note says so); if the root attributes share the
    # damaged collection, the trace cannot be opened: one error line
    assert outcome.kind in ("ok", "error-line"), (outcome.kind, outcome.stderr[-2000:])
    if outcome.kind == "error-line":
        assert "damaged part of the file" in outcome.stderr
    elif command == "analyze":
        assert "damaged part of the file" in outcome.stdout


def test_damaged_map_paths_keep_the_rows_before_them(tmp_path):
    """Memory maps with long paths fill many heap collections; with the last one's body lost, the
    readers use the snapshots before it, say so, and finish."""
    from tests.analyzer_helpers import maps, vpns, writer

    path = tmp_path / "t.h5"
    w = writer(path)
    row = w.open_process(pid=10, ppid=1, start_time_unix=0, name="a", cmdline=["a"], exe="/a")
    for s in range(60):
        if s % 3 == 0:
            w.add_maps(row, s, maps(*[(100 + 10 * k, 105 + 10 * k, "rw-p", f"/{'long-path-' * 15}{s}-{k}")
                                      for k in range(20)]))
        w.add_sample(s * 0.5, (s + 1) * 0.5, {row: (vpns(100 + s % 5, 200), 50)})
        w.flush()
    w.close(status="complete", end_reason="test")
    with h5py.File(path, "r") as f:
        last = f["maps/path"].shape[0] - 1
    address, size = _heap_collection_of(path, "maps/path", last)
    first, _ = _heap_collection_of(path, "maps/path", 0)
    assert address != first
    data = bytearray(path.read_bytes())
    data[address + 16:address + size] = bytes(size - 16)
    path.write_bytes(bytes(data))
    outcome = run_calm(*fault_campaign.reader_args("analyze", path, tmp_path / "out"))
    assert outcome.kind == "ok", (outcome.kind, outcome.stderr[-2000:])
    assert "damaged part of the file" in outcome.stdout
    with Trace(path) as trace:
        snapshots = trace.map_snapshots(row)
        assert trace.damaged_strings and 0 < len(snapshots) < 20


@pytest.mark.parametrize("column", ["start", "path"])
@pytest.mark.parametrize("command", fault_campaign.READERS)
def test_a_damaged_maps_chunk_is_one_error_line(real_trace, tmp_path, command, column):
    """A byte flipped inside a compressed chunk of the memory maps (the CI trial's flip@214934:
    replay read the maps after opening the trace, outside the reader's guard, and printed HDF5's
    traceback). Every reader ends with one line or with output that says the file was damaged."""
    with h5py.File(real_trace, "r") as f:
        info = f[f"maps/{column}"].id.get_chunk_info(0)
    _flip_and_read(real_trace, tmp_path, command, info.byte_offset + info.size // 2)


def _flip_and_read(trace, tmp_path, command: str, offset: int) -> None:
    """Flips the byte at `offset` of a copy of `trace` and reads the copy with `command`: it must
    end with one error line that says the file is damaged, or with output."""
    damaged = tmp_path / "damaged.h5"
    data = bytearray(trace.read_bytes())
    data[offset] ^= 0xFF
    damaged.write_bytes(bytes(data))
    out = tmp_path / ("report.html" if command == "report" else "out")
    outcome = run_calm(*fault_campaign.reader_args(command, damaged, out))
    assert outcome.kind in ("ok", "error-line"), (outcome.kind, outcome.stderr[-2000:])
    if outcome.kind == "error-line":
        assert "corrupt" in outcome.stderr or "damaged" in outcome.stderr, outcome.stderr


@pytest.mark.parametrize("group", ["maps", "residency", "maps/start"])
@pytest.mark.parametrize("command", fault_campaign.READERS)
def test_a_damaged_object_header_is_one_error_line(real_trace, tmp_path, command, group):
    """The first byte of a group's or dataset's object header flipped (the CI trial's flip@18721:
    h5py raises KeyError "bad object header version number" when a reader first opens it, after
    the trace is open). Every reader ends with one line or with output that says the file was
    damaged."""
    with h5py.File(real_trace, "r") as f:
        address = h5py.h5o.get_info(f[group].id).addr
    _flip_and_read(real_trace, tmp_path, command, address)
