"""Exact numbers of the analyzer on a small hand-made trace (written with the real TraceWriter)."""

from __future__ import annotations

import numpy as np
import pytest

from calm.analyzer import analyze
from calm.core.errors import CalmError
from tests.analyzer_helpers import handcrafted_trace, maps, vpns, writer


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory):
    return handcrafted_trace(tmp_path_factory.mktemp("exact") / "t.h5")


@pytest.fixture(scope="module")
def analysis(trace_path):
    return analyze(trace_path)


def _page(a, pid, vpn):
    row = next(p.row for p in a.processes if p.pid == pid)
    idx = np.flatnonzero((a.pages.process == row) & (a.pages.vpn == vpn))
    assert idx.size == 1, (pid, vpn)
    return int(a.pages.dirty[idx[0]]), int(a.pages.mapped[idx[0]]), float(a.pages.p[idx[0]])


def test_probability_over_mapped_samples(analysis):
    a = analysis
    assert len(a.pages) == 7
    assert _page(a, 10, 100) == (10, 10, 1.0)
    assert _page(a, 10, 101) == (5, 10, 0.5)
    assert _page(a, 10, 200) == (5, 10, 0.5)
    assert _page(a, 10, 300) == (2, 5, 0.4)  # mapped only from sample 5 on
    assert _page(a, 10, 500) == (1, 1, 1.0)  # outside every recorded region: raised, and said so
    assert any("1 dirtied page(s) lay outside the recorded maps" in n for n in a.notes)


def test_process_that_exited_mid_way(analysis):
    # pid 11 lived for samples 0-3 only: its pages are dirty in 4 of the 4 samples it existed.
    a = analysis
    assert _page(a, 11, 100) == (4, 4, 1.0)
    assert _page(a, 11, 101) == (4, 4, 1.0)
    b = next(p for p in a.processes if p.pid == 11)
    assert (b.first_sample, b.last_sample, b.exit_sample) == (0, 3, 4)
    assert a.timeline.dirty_by_process[b.row].tolist() == [2, 2, 2, 2, 0, 0, 0, 0, 0, 0]


def test_per_second_conversion(analysis):
    # interval 0.5 s: p = 0.5 per sample -> 1 - 0.5**2 = 0.75 per second
    assert analysis.interval == pytest.approx(0.5)
    assert analysis.p_per_second(np.array([0.5, 0.4, 1.0])) == pytest.approx([0.75, 0.64, 1.0])


def test_ranking(analysis):
    top = analysis.ranking(100)
    pid = {p.row: p.pid for p in analysis.processes}
    got = [(pid[int(r)], int(v)) for r, v in zip(top.process, top.vpn)]
    assert got == [(10, 100), (11, 100), (11, 101), (10, 500), (10, 101), (10, 200), (10, 300)]
    assert analysis.ranking(2).p.tolist() == [1.0, 1.0]
    only_b = analysis.ranking(100, process=1)
    assert only_b.vpn.tolist() == [100, 101]
    assert analysis.count_above((0.45, 0.5, 0.99)) == {0.45: 6, 0.5: 4, 0.99: 4}


def test_timeline(analysis):
    tl = analysis.timeline
    assert tl.dirty_pages.tolist() == [4, 3, 4, 3, 2, 2, 3, 3, 4, 3]
    assert tl.writable_pages.tolist() == [18, 18, 18, 18, 14, 15, 15, 15, 15, 15]
    assert tl.top_dirty[100].tolist() == tl.dirty_pages.tolist()
    assert tl.dirty_rate_mb_s(4096)[0] == pytest.approx(4 * 4096 / 0.5 / 1e6)
    assert tl.t.tolist() == pytest.approx([0.5 * (s + 1) for s in range(10)])


def test_working_sets(analysis):
    by_window = {ws.window: ws for ws in analysis.working_sets}
    one = by_window[1.0]
    assert one.distinct_pages.tolist() == [4, 4, 3, 4, 5]
    assert one.complete.all()
    ten = by_window[10.0]
    assert ten.distinct_pages.tolist() == [7] and not ten.complete.any()


def test_regions(analysis):
    stats = {s.label: s for s in analysis.region_stats}
    assert set(stats) == {"[heap]", "anonymous", "unmapped"}
    assert (stats["[heap]"].pages, stats["[heap]"].dirty_page_samples) == (2, 15)
    assert (stats["anonymous"].pages, stats["anonymous"].dirty_page_samples) == (4, 15)
    assert stats["anonymous"].processes == {0, 1}
    assert (stats["unmapped"].pages, stats["unmapped"].dirty_page_samples) == (1, 1)


def test_heatmap_and_raster_keep_every_event(analysis):
    h = analysis.heatmap
    # compacted axis: pid 10 has [100,110) [200,204) [300,301) [500,501), pid 11 [100,104)
    assert h.total_pages == 20
    assert [(r.process, r.start // 4096, r.end // 4096) for r in h.ranges] == [
        (0, 100, 110), (0, 200, 204), (0, 300, 301), (0, 500, 501), (1, 100, 104)]
    assert h.counts.sum() == 31
    assert h.counts.shape == (20, 10)
    assert h.counts[0].tolist() == [1] * 10  # pid 10 page 100
    assert h.counts[16:20].sum() == 8  # pid 11 pages
    assert analysis.top_raster.counts.sum(axis=1).tolist() == [10, 4, 4, 1, 5, 5, 2]


def test_streaming_in_tiny_chunks_gives_the_same_result(trace_path, analysis):
    small = analyze(trace_path, max_events=1)
    for name in ("process", "vpn", "dirty", "mapped", "region"):
        assert np.array_equal(getattr(small.pages, name), getattr(analysis.pages, name)), name
    for ws_small, ws in zip(small.working_sets, analysis.working_sets):
        assert np.array_equal(ws_small.distinct_pages, ws.distinct_pages)
    assert np.array_equal(small.heatmap.counts, analysis.heatmap.counts)
    assert np.array_equal(small.top_raster.counts, analysis.top_raster.counts)


def test_pid_filter(trace_path):
    a = analyze(trace_path, pids=[11])
    assert [p.pid for p in a.processes] == [11]
    assert a.pages.vpn.tolist() == [100, 101]
    assert a.timeline.dirty_pages.tolist() == [2, 2, 2, 2, 0, 0, 0, 0, 0, 0]
    with pytest.raises(CalmError, match="pid 99 is not in"):
        analyze(trace_path, pids=[99])


def test_without_maps_pages_count_over_the_process_lifetime(tmp_path):
    w = writer(tmp_path / "nomaps.h5", interval=1.0)
    row = w.open_process(pid=5, ppid=1, start_time_unix=0, name="x", cmdline=[], exe="")
    for s in range(4):
        w.add_sample(float(s), s + 1.0, {row: (vpns(7) if s < 3 else vpns(), 1)})
    w.close(status="complete", end_reason="test")
    a = analyze(tmp_path / "nomaps.h5")
    assert a.pages.dirty.tolist() == [3] and a.pages.mapped.tolist() == [4]
    assert any("no memory map recorded for pid(s) [5]" in n for n in a.notes)


def test_bss_tail_is_recognised(tmp_path):
    w = writer(tmp_path / "bss.h5")
    row = w.open_process(pid=5, ppid=1, start_time_unix=0, name="x", cmdline=[], exe="")
    w.add_maps(row, 0, maps((10, 12, "r--p", "/bin/x"), (12, 13, "rw-p", "/bin/x"),
                            (13, 20, "rw-p", ""), (30, 31, "rw-p", "")))
    w.add_sample(0.0, 0.5, {row: (vpns(12, 15, 30), 3)})
    w.close(status="complete", end_reason="test")
    a = analyze(tmp_path / "bss.h5")
    labels = sorted(a.regions[i].label for i in a.pages.region.tolist())
    assert labels == ["/bin/x", "anonymous", "anonymous (.bss of /bin/x)"]


def test_empty_trace_is_refused(tmp_path):
    w = writer(tmp_path / "empty.h5")
    w.open_process(pid=5, ppid=1, start_time_unix=0, name="x", cmdline=[], exe="")
    w.close(status="complete", end_reason="test")
    with pytest.raises(CalmError, match="holds no complete sample"):
        analyze(tmp_path / "empty.h5")
