"""Every figure says what is true at a glance: no text printed over text, legends off the data,
every algorithm and every window size visible, labels that keep what identifies a bar, axes that
neither crowd their ticks nor fall off the data (issue 18).

The figures are drawn from a real trace file (written with the real TraceWriter: nine processes
sampled every 0.1 s, hot, warm and cold pages in a heap, anonymous memory and a file mapping), a
real replay of it, and `calm model`'s figure for the README's examples.
"""

from __future__ import annotations

import numpy as np
import pytest
from analyzer_helpers import PAGE, maps
from figure_helpers import covers_axes, drawn_texts, overlapping_texts

from calm.trace.writer import TraceWriter

PROCESSES = 9
SAMPLES = 190  # 19 s: one complete 10 s window
INTERVAL = 0.1


def _busy_trace(path):
    """Nine processes; process k writes its 40 hot pages with p=0.9, 200 warm ones with p=0.3 and
    600 cold ones with p=0.02 per sample, the busiest process most (p scaled by 1/(k+1))."""
    rng = np.random.default_rng(7)
    w = TraceWriter(path, force=True, attrs={
        "page_size": PAGE, "backend": "soft-dirty", "interval": INTERVAL, "kernel_release": "test",
        "hostname": "test", "start_time": "2026-01-01T00:00:00Z", "start_time_unix": 0.0,
        "start_monotonic": 0.0, "tool_version": "test", "command": []})
    p = np.concatenate([np.full(40, 0.9), np.full(200, 0.3), np.full(600, 0.02)])
    rows = []
    for k in range(PROCESSES):
        row = w.open_process(pid=100 + k, ppid=1, start_time_unix=0, name=f"w{k}", cmdline=[f"w{k}"], exe="/w")
        w.add_maps(row, 0, maps((1000, 1040, "rw-p", "[heap]"), (2000, 2200, "rw-p", ""),
                                (3000, 3600, "rw-p", "/usr/lib/x86_64-linux-gnu/libexample-with-a-long-name.so.1")))
        rows.append(row)
    vpn = np.concatenate([np.arange(1000, 1040), np.arange(2000, 2200), np.arange(3000, 3600)])
    for s in range(SAMPLES):
        per = {}
        for k, row in enumerate(rows):
            dirty = vpn[rng.random(vpn.size) < p / (1 + k)]
            per[row] = (dirty.astype(np.uint64), vpn.size)
        w.add_sample(0.05 + s * INTERVAL, 0.05 + (s + 1) * INTERVAL, per)
    w.close(status="complete", end_reason="test")
    return path


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    from calm.analyzer import analyze

    return analyze(_busy_trace(tmp_path_factory.mktemp("figures") / "busy.h5"))


@pytest.fixture(scope="module")
def replayed(analysis):
    from calm.replay import run_replay
    from calm.replay.outputs import json_ready

    scenarios = ["64MiB@256Mbit", "64MiB@128Mbit", "32MiB@256Mbit", "32MiB@64Mbit"]
    return json_ready(run_replay(analysis.trace_path, scenarios, sweep_points=5).to_dict())


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def test_no_analysis_figure_prints_text_over_text(analysis):
    from calm.analyzer.plots import FIGURES

    for name, make in FIGURES.items():
        assert overlapping_texts(make(analysis)) == [], name


def test_per_second_axis_spreads_its_ticks(analysis):
    """With 0.1 s samples, p = 0.2 per sample is 0.89 per second: the right axis ticks the 9s
    where they fall on the left axis instead of crowding 0-0.8 into its bottom."""
    from calm.analyzer.plots import FIGURES

    fig = FIGURES["top100"](analysis)
    right = fig.axes[1]
    labels = [t.get_text() for t in right.get_yticklabels()]
    assert {"0.9", "0.99", "0.999"} <= set(labels) and labels[0] == "0" and labels[-1] == "1", labels
    ticks = right.get_yticks()
    assert np.all(np.diff(ticks) >= 0.05), ticks  # at least 5 % of the axis apart


def test_process_legend_stays_off_the_data(analysis):
    from calm.analyzer.plots import FIGURES, PROCESS_LINES

    fig = FIGURES["over_time"](analysis)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends
    for legend in legends:
        assert covers_axes(fig, legend.get_window_extent(renderer)) == []
    entries = [t.get_text() for t in legends[0].get_texts()]
    # the busiest processes one by one, the rest summed, and the total
    # each named by pid and the role (or name) it gives itself
    assert [e.split()[:2] for e in entries[:PROCESS_LINES]] == [["pid", str(100 + k)] for k in range(PROCESS_LINES)], entries
    assert entries[PROCESS_LINES:] == [f"{PROCESSES - PROCESS_LINES} other processes", "service (each page once)"]


def test_every_window_size_in_the_legend_is_drawn(analysis):
    """A 19 s trace holds one complete 10 s window: it is drawn as a step, not a lone point."""
    from calm.analyzer.plots import FIGURES

    fig = FIGURES["working_set"](analysis)
    ax = fig.axes[0]
    entries = [t.get_text() for t in ax.get_legend().get_texts()]
    assert entries == ["1 s windows (19)", "10 s windows (1)"], entries
    steps = [p for p in ax.patches if p.get_label() in entries]
    assert len(steps) == 2
    for step in steps:
        edges = step.get_data().edges
        assert edges[-1] - edges[0] >= 1.0 and np.all(step.get_data().values > 0)


def test_bar_labels_lead_with_what_identifies_the_bar(analysis):
    from calm.analyzer.plots import symbol_label
    from calm.analyzer.regions import short_file_name

    label = symbol_label("datacache", ".bss", "/venv/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so")
    assert label == "datacache (.bss, _multiarray_umath…linux-gnu.so)", label
    long_name = "_ZN4absl12lts_2023080218container_internal15EmptyGroupE"
    assert symbol_label(long_name, ".data", "/usr/lib/libabsl.so").startswith(long_name + " (")
    assert short_file_name("/usr/lib/libc.so.6") == "libc.so.6"
    names = [s.name for s in analysis.region_stats]
    assert names == ["anonymous", "[heap]", "libexample-with-a-long-name.so.1 (file)"], names
    assert [s.phrase for s in analysis.region_stats] == [
        "anonymous memory", "the heap", "the mapping of the file libexample-with-a-long-name.so.1"]


def test_replay_figures_show_every_algorithm_and_print_no_text_over_text(replayed):
    from calm.replay.plots import FIGURES

    for name, (draw, _) in FIGURES.items():
        for scenarios in (replayed["scenarios"], replayed["scenarios"][:1], replayed["scenarios"][:3]):
            fig = draw({**replayed, "scenarios": scenarios})
            assert overlapping_texts(fig) == [], (name, len(scenarios))
    fig = FIGURES["bandwidth"][0](replayed)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    algorithms = [r["algorithm"] for r in replayed["scenarios"][0]["results"]]
    assert len(panels) == len(replayed["scenarios"]) * len(algorithms)
    for i, ax in enumerate(panels):  # one panel per (scenario, algorithm), each with its own run
        sc = replayed["scenarios"][i // len(algorithms)]
        run = sc["results"][i % len(algorithms)]
        lines = [line for line in ax.get_lines() if line.get_gid() == "bandwidth"]
        if run["series"]["bandwidth_bps"]:
            assert lines and np.nanmax(lines[0].get_ydata()) == pytest.approx(
                max(run["series"]["bandwidth_bps"]) / 1e6), (sc["name"], run["algorithm"])
        else:  # a run that went straight to stop-and-copy says so in its panel
            assert not lines and [t.get_text() for t in ax.texts] == ["no pre-copy"], (sc["name"], run)
    titles = [t.get_text() for t, _ in drawn_texts(fig)]
    assert all(a in titles for a in algorithms)


def test_sweep_labels_the_oracle_and_the_plan_and_keeps_the_model_on_the_axes(replayed):
    from calm.replay.plots import FIGURES

    fig = FIGURES["sweep"][0](replayed)
    legend = " | ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "oracle: the cheapest of these bandwidths, chosen in hindsight" in legend
    assert "the table's fixed row: bandwidth planned before the migration" in legend
    for ax in fig.axes:
        low, high = ax.get_ylim()
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata(), dtype=float)
            y = y[np.isfinite(y)]
            assert np.all((y >= low) & (y <= high)), (line.get_label(), y, (low, high))


@pytest.mark.parametrize("args,schedule", [
    ((), "rises"),  # the slides' example, 20 ms time unit, the replay's default cost
    (("--ram", "1GiB", "--bandwidth", "1Gbit", "--time-unit", "100ms", "--p", "0.0005"), "holds"),
    (("--ram", "512MiB", "--bandwidth", "256Mbit", "--time-unit", "100ms", "--p", "0.001"), "rises"),
])
def test_model_figure_in_physical_units_says_what_the_schedule_does(tmp_path, monkeypatch, args, schedule):
    import calm.replay.plots as plots
    from calm.cli import main

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, out, stem: figures.append(fig) or [])
    assert main(["model", *args, "--batch", "64", "-q", "-o", str(tmp_path / "m")]) == 0
    (fig,) = figures
    assert overlapping_texts(fig) == []
    left, right = fig.axes[0], fig.axes[1]
    assert left.get_xlabel() == "migration bandwidth (Mbit/s)" and right.get_ylabel() == "migration bandwidth (Mbit/s)"
    assert right.yaxis.get_offset_text().get_text() == ""  # no '+3.0319e3'
    assert right.get_ylim()[0] == 0
    assert right.get_title().startswith(f"Bandwidth schedule: CALM {schedule}")
    low, high = left.get_ylim()
    assert high / low < 1e20  # not 1e-314 to 1e14


def test_cost_bars_outline_the_lowest_with_ties(replayed):
    """The bars outlined as lowest are the ones the report badges: within 1 % of the scenario's
    lowest cost or within one page's downtime of it (rule written out here, not imported)."""
    from calm.replay.plots import FIGURES

    results = {**replayed, "scenarios": [dict(sc) for sc in replayed["scenarios"]]}
    first = results["scenarios"][0]
    low = min(r["cost"] for r in first["results"])
    first["results"] = [{**r, "cost": low * 1.005} if r["algorithm"] == "fixed" else r for r in first["results"]]
    fig = FIGURES["cost_bars"][0](results)
    ax = fig.axes[0]
    algorithms = [r["algorithm"] for r in first["results"]]
    bars = [p for p in ax.patches if p.get_height() > 0][:len(algorithms) * len(results["scenarios"])]
    for i, sc in enumerate(results["scenarios"]):
        costs = {r["algorithm"]: r["cost"] for r in sc["results"]}
        low = min(costs.values())
        tie = max(0.01 * low, results["page_size"] * 8 / sc["bandwidth_bps"])
        outlined = {a for j, a in enumerate(algorithms)
                    if bars[j * len(results["scenarios"]) + i].get_linewidth() > 0}
        assert outlined == {a for a, c in costs.items() if c - low <= tie}, (sc["name"], costs, outlined)
    fixed = algorithms.index("fixed")  # 0.5 % above the lowest: a tie, outlined too
    assert bars[fixed * len(results["scenarios"])].get_linewidth() > 0
