"""`calm analyze` as a user runs it: the real CLI in a subprocess, real files in and out."""

from __future__ import annotations

import csv
import json
import shutil
import xml.etree.ElementTree as ET

import h5py
import matplotlib.image as mpimg
import numpy as np
import pytest

from calm.analyzer.plots import FIGURES, FORMATS
from tests.analyzer_helpers import handcrafted_trace
from tests.collector_helpers import calm, one_line_error


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory):
    return handcrafted_trace(tmp_path_factory.mktemp("cli") / "t.h5")


def test_every_plot_and_data_file_is_written(trace_path, tmp_path):
    out = tmp_path / "out"
    result = calm("analyze", str(trace_path), "-o", str(out), check=True)
    assert "10 samples over 5.0 s" in result.stdout
    assert "dirtied pages: 7" in result.stdout
    assert result.stderr.startswith("wrote ") and result.stderr.count("\n") == 1, result.stderr
    for name in FIGURES:
        for fmt in FORMATS:
            path = out / f"{name}.{fmt}"
            assert path.stat().st_size > 1000, path
        image = mpimg.imread(out / f"{name}.png")
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert float(np.std(image)) > 0.01, f"{name}.png is blank"
        root = ET.parse(out / f"{name}.svg").getroot()
        assert root.tag.endswith("svg")
        assert "time since start (s)" in (out / "over_time.svg").read_text() or name != "over_time"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["service"]["dirtied_pages"] == 7
    assert summary["samples"] == 10
    assert summary["processes"][1]["exited"] is True
    assert summary["working_set_mib"]["1s"]["max"] == pytest.approx(5 * 4096 / 2**20)
    rows = (out / "pages.csv").read_text().splitlines()
    assert rows[0].startswith("rank,pid,address,dirty_samples,mapped_samples,p_per_sample")
    assert len(rows) == 8
    assert rows[1].split(",")[:7] == ["1", "10", "0x64000", "10", "10", "1", "1"]
    assert "0.75" in rows[5]  # pid 10 page 101: p 0.5 per 0.5 s sample -> 0.75 per second


def test_default_output_directory_and_no_plots(trace_path, tmp_path):
    local = tmp_path / "mine.h5"
    shutil.copy(trace_path, local)
    calm("analyze", str(local), "--no-plots", "-q", check=True)
    out = tmp_path / "mine-analysis"
    assert sorted(p.name for p in out.iterdir()) == ["pages.csv", "regions.csv", "summary.json",
                                                      "symbols.csv"]


def _error(*args: str) -> str:
    return one_line_error(calm("analyze", *args))


def test_truncated_file(trace_path, tmp_path):
    data = trace_path.read_bytes()
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(data[: len(data) // 2])
    line = _error(str(bad), "-o", str(tmp_path / "o"))
    assert "truncated" in line or "corrupt" in line


@pytest.mark.parametrize("start_fraction", [0.05, 0.5, 0.8])
def test_corrupt_file(trace_path, tmp_path, start_fraction):
    data = bytearray(trace_path.read_bytes())
    rng = np.random.default_rng(0)
    start = int(len(data) * start_fraction)
    data[start:] = rng.integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(bytes(data))
    line = _error(str(bad), "-o", str(tmp_path / "o"))
    assert "corrupt" in line or "not a" in line


def test_non_trace_hdf5(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(10)
    assert _error(str(other), "-o", str(tmp_path / "o")) == \
        f"calm analyze: error: {other} is an HDF5 file but not a calm trace"


def test_not_hdf5_and_missing(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert "is not an HDF5 file" in _error(str(text), "-o", str(tmp_path / "o"))
    assert "does not exist" in _error(str(tmp_path / "nope.h5"), "-o", str(tmp_path / "o"))


def test_bad_options(trace_path, tmp_path):
    assert "pid 4242 is not in" in _error(str(trace_path), "--pid", "4242", "-o", str(tmp_path / "o"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "is not a directory" in _error(str(trace_path), "-o", str(blocker))


def test_trace_without_dirty_pages_left_unclosed(tmp_path):
    """An idle target and a recorder that never closed the file: still every file, and a note."""
    from tests.analyzer_helpers import maps, vpns, writer

    path = tmp_path / "idle.h5"
    w = writer(path)
    row = w.open_process(pid=5, ppid=1, start_time_unix=0, name="x", cmdline=[], exe="")
    w.add_maps(row, 0, maps((10, 20, "rw-p", "")))
    for s in range(5):
        w.add_sample(s * 0.5, (s + 1) * 0.5, {row: (vpns(), 3)})
    w.flush()
    w._file.close()  # like a killed recorder: flushed, status still "recording"
    out = tmp_path / "out"
    result = calm("analyze", str(path), "-o", str(out), check=True)
    assert "dirtied pages: 0 " in result.stdout
    assert "note: the trace was not closed" in result.stdout
    for name in FIGURES:
        for fmt in FORMATS:
            assert (out / f"{name}.{fmt}").stat().st_size > 1000
    assert json.loads((out / "summary.json").read_text())["service"]["dirtied_pages"] == 0


def test_region_names_attribute_anonymous_memory(trace_path, tmp_path):
    """--region-names names ranges the maps show as anonymous (a JVM's heap, say): pages inside a
    range move to that name, pages outside keep their mapping, and names for a pid the trace does
    not hold are a note, not an error."""
    names = tmp_path / "names.txt"
    names.write_text("# pid start-end name\n"
                     f"10 {200 * 4096:x}-{204 * 4096:x} Java heap\n"
                     f"10 0x{300 * 4096:x}-0x{301 * 4096:x} JVM Code\n"
                     f"99 {100 * 4096:x}-{104 * 4096:x} elsewhere\n")
    out = tmp_path / "out"
    calm("analyze", str(trace_path), "-o", str(out), "--no-plots", "-q", "--region-names", str(names), check=True)
    regions = {r["region"]: r for r in csv.DictReader((out / "regions.csv").open())}
    assert regions["Java heap"]["kind"] == "named"
    assert (regions["Java heap"]["pages"], regions["Java heap"]["dirty_page_samples"]) == ("1", "5")  # page 200
    assert (regions["JVM Code"]["pages"], regions["JVM Code"]["dirty_page_samples"]) == ("1", "2")  # page 300
    assert regions["[heap]"]["pages"] == "2"  # pages 100 and 101 of pid 10 are outside every range
    assert "anonymous" in regions  # pid 11's anonymous pages: pid 99's name does not reach them
    pages = {(r["pid"], r["address"]): r["region"] for r in csv.DictReader((out / "pages.csv").open())}
    assert pages[("10", hex(200 * 4096))] == "Java heap" and pages[("11", hex(100 * 4096))] == "anonymous"
    notes = json.loads((out / "summary.json").read_text())["notes"]
    assert any("pid(s) [99] ignored" in n for n in notes), notes


@pytest.mark.parametrize("content, message", [
    ("10 c8000-c0000 backwards\n", "names.txt:1: range c8000-c0000 is empty"),
    ("# nothing\n10 heap-here Java heap\n", "names.txt:2: expected 'PID START-END NAME'"),
    ("# only comments\n", "names no range"),
    (None, "cannot read region names"),
])
def test_region_names_bad_file_one_line(trace_path, tmp_path, content, message):
    names = tmp_path / "names.txt"
    if content is not None:
        names.write_text(content)
    line = one_line_error(calm("analyze", str(trace_path), "-o", str(tmp_path / "o"), "--region-names", str(names)),
                          exit_code=1)
    assert message in line, line
    assert not (tmp_path / "o").exists()
