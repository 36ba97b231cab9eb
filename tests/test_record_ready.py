"""`calm record --ready-file`, the handshake that replaces sleeps in scripts and tests, and what
`calm record` imports before it starts recording (start-up time)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from calm.trace.reader import Trace
from tests.collector_helpers import REPO, Recording, calm, one_line_error, stop, wait_for_file, wait_until

# A target that maps 64 pages, says where (its ready file), then writes page 7 when told to (stdin)
# and keeps running until told to exit.
TARGET = textwrap.dedent("""
    import ctypes, mmap, os, sys
    pages = mmap.mmap(-1, 64 * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for i in range(64):
        pages[i * mmap.PAGESIZE] = 1
    address = ctypes.addressof(ctypes.c_char.from_buffer(pages))
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(address))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    sys.stdin.readline()
    pages[7 * mmap.PAGESIZE + 100] = 2
    print("written", flush=True)
    sys.stdin.readline()
""")


def test_a_write_made_after_the_ready_file_appears_is_in_the_trace(tmp_path):
    where = tmp_path / "target.address"
    target = subprocess.Popen([sys.executable, "-c", TARGET, str(where)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    out = tmp_path / "t.h5"
    try:
        wait_for_file(where, target)
        page = int(where.read_text()) // os.sysconf("SC_PAGE_SIZE") + 7
        with Recording(tmp_path, "--pid", str(target.pid), "--interval", "0.05", "-o", str(out)) as rec:
            rec.wait_ready()
            assert rec.ready.read_text() == f"{rec.proc.pid}\n"  # a pid file: kill -INT $(cat FILE)
            assert stat.S_IMODE(rec.ready.stat().st_mode) == 0o600
            target.stdin.write("go\n")
            target.stdin.flush()
            assert target.stdout.readline() == "written\n"
            _, seen, _ = rec.wait_for_samples(1)
            rec.wait_for_samples(seen + 1)  # a progress line printed after the write: sampled since
            assert rec.finish() == 0, rec.stderr
    finally:
        stop(target)
    with Trace(out) as trace:
        dirty = [s for s, per in trace.iter_samples() if np.isin(page, per.get(0, np.empty(0))).any()]
        assert len(dirty) == 1, dirty  # written once, seen once


def test_a_stale_ready_file_is_replaced_and_a_bad_one_refused(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    stale = tmp_path / "rec.ready"  # where Recording asks calm to put it
    stale.write_text("12345\n")  # left by an earlier run
    try:
        with Recording(tmp_path, "--pid", str(sleeper.pid), "-o", str(tmp_path / "t.h5")) as rec:
            assert rec.ready == stale
            wait_until(lambda: stale.exists() and stale.read_text() == f"{rec.proc.pid}\n",
                       "a fresh ready file", rec.proc)
            assert rec.finish() == 0, rec.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    for ready, message in ((tmp_path, "is a directory"), (tmp_path / "no" / "r", "does not exist"),
                           (tmp_path / "v.h5", "must be different files")):
        line = one_line_error(calm("record", "--pid", str(os.getpid()), "-o", str(tmp_path / "v.h5"),
                                   "--ready-file", str(ready)), exit_code=1)
        assert message in line, line
    assert not (tmp_path / "v.h5").exists()


def test_record_loads_no_hdf5_or_plotting_library_before_recording(tmp_path):
    """h5py loads only once the baselines are taken (inside the first interval), matplotlib never:
    the time to the first sample is the interpreter, numpy and psutil (scripts/bench_startup.py)."""
    code = ("import sys\nfrom calm.cli import build_parser\nbuild_parser()\n"
            "import calm.cli.record, calm.collector.recorder\n"
            "print(sorted(m for m in ('h5py', 'matplotlib', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_waiting_for_a_ready_file_reports_a_program_that_exits_or_hangs(tmp_path):
    """calm.core.ready.wait_for, what scripts use to wait on a program's ready file: it returns
    once the file appears, says the exit status of a program that dies first (at once, not at the
    deadline), and gives up on one that neither exits nor gets ready."""
    from calm.core.ready import NotReady, wait_for

    ready = tmp_path / "ready"
    announcing = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; "
                                   "from calm.core.ready import announce; announce(Path(sys.argv[1])); "
                                   "sys.stdin.read()", str(ready)], stdin=subprocess.PIPE)
    try:
        wait_for(ready, announcing, "the announcer", timeout=120)
        assert ready.read_text() == f"{announcing.pid}\n"
    finally:
        announcing.communicate(b"", timeout=60)
    failing = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(NotReady) as failed:
        wait_for(tmp_path / "never", failing, "the failing program", timeout=None)  # no deadline to hide behind
    assert failed.value.exit_status == 3
    assert str(failed.value) == "the failing program exited with status 3 before it was ready"
    silent = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        with pytest.raises(NotReady) as hung:
            wait_for(tmp_path / "never", silent, "the silent program", timeout=0.2)
    finally:
        silent.communicate(b"", timeout=60)
    assert hung.value.exit_status is None and str(hung.value) == "the silent program was not ready within 0.2 s"
