"""Figures of an `Analysis`, each written as PNG and SVG (matplotlib, Agg backend).

Why separate from computing: the HTML report and notebooks reuse the same `Analysis` and may draw
only some figures. Every axis is labelled with its unit; probabilities say which interval they are
per. A figure with nothing to show (e.g. no ELF symbol) still gets written, saying why, so the set
of files is always the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from calm.analyzer.model import Analysis  # noqa: E402

FORMATS = ("png", "svg")
MIB = 1 << 20


def _p_label(a: Analysis) -> str:
    return f"dirtying probability per sample ({a.interval:.3g} s)"


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_top(a: Analysis, n: int) -> Figure:
    """Probability of the top-n pages by rank (the slides' "Dirtying Probability (top N)")."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    top = a.ranking(n)
    if len(top) == 0:
        _empty(ax, "no page was dirtied in this trace")
    else:
        rank = np.arange(1, len(top) + 1)
        if n <= 100:
            ax.bar(rank, top.p, width=1.0, color="tab:red", edgecolor="white", linewidth=0.3)
        else:
            ax.plot(rank, top.p, color="tab:red", lw=1.5)
            ax.fill_between(rank, top.p, color="tab:red", alpha=0.25)
        ax.set_xlim(0.5, n + 0.5)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("page rank (1 = most often dirtied)")
        ax.set_ylabel(_p_label(a))
        sec = ax.secondary_yaxis("right", functions=(
            lambda p: 1 - np.power(np.clip(1 - p, 1e-12, 1), 1 / a.interval),
            lambda s: 1 - np.power(np.clip(1 - s, 1e-12, 1), a.interval)))
        sec.set_ylabel("probability per second")
    ax.set_title(f"Dirtying probability (top {n})")
    return fig


def plot_cdf(a: Analysis) -> Figure:
    """CDF of p over the dirtied pages, with counts above thresholds."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    p = np.sort(a.pages.p)
    if p.size == 0:
        _empty(ax, "no page was dirtied in this trace")
    else:
        ax.step(p, np.arange(1, p.size + 1) / p.size, where="post", color="tab:blue")
        ax.set_xscale("log")
        ax.set_xlabel(_p_label(a) + ", log scale")
        ax.set_ylabel("fraction of dirtied pages with p <= x")
        ax.set_ylim(0, 1.02)
        above = a.count_above((0.01, 0.1, 0.5, 0.9))
        text = "\n".join(f"p > {t:g}: {c:,} pages ({c * a.page_size / MIB:.1f} MiB)" for t, c in above.items())
        ax.text(0.02, 0.97, text, transform=ax.transAxes, va="top", fontsize=9,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})
    ax.set_title(f"Distribution of dirtying probability ({len(a.pages):,} dirtied pages)")
    return fig


def plot_over_time(a: Analysis) -> Figure:
    """Dirty pages and dirty rate per sample, and how much of the hot set was dirty."""
    tl = a.timeline
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax = axes[0]
    for row, series in tl.dirty_by_process.items():
        if len(tl.dirty_by_process) <= 8:
            pid = next(p.pid for p in a.processes if p.row == row)
            ax.plot(tl.t, series, lw=0.8, label=f"pid {pid}")
    ax.plot(tl.t, tl.dirty_pages, color="black", lw=1.2, label="all processes")
    ax.set_ylabel("dirty pages per sample")
    ax.legend(fontsize=8, loc="upper right")
    axes[1].plot(tl.t, tl.dirty_rate_mb_s(a.page_size), color="tab:orange", lw=1)
    axes[1].set_ylabel("dirty rate (MB/s)")
    for n, series in tl.top_dirty.items():
        size = min(n, len(a.pages))
        if size:
            axes[2].plot(tl.t, series / size, lw=1, label=f"top {size} pages")
    axes[2].set_ylim(0, 1.02)
    axes[2].set_ylabel("fraction of hot pages dirty")
    axes[2].set_xlabel("time since start (s)")
    if len(a.pages):
        axes[2].legend(fontsize=8, loc="upper right")
    fig.suptitle("Dirtying over time")
    fig.tight_layout()
    return fig


def plot_top_over_time(a: Analysis) -> Figure:
    """The top-100 pages' dirtying probability in each time bin (the slides' "over time")."""
    r = a.top_raster
    fig, ax = plt.subplots(figsize=(9, 5))
    if r.counts.shape[0] == 0 or len(a.pages) == 0:
        _empty(ax, "no page was dirtied in this trace")
    else:
        mesh = ax.pcolormesh(r.time_edges, np.arange(r.counts.shape[0] + 1) + 0.5, r.fraction(),
                             cmap="magma", vmin=0, vmax=1, shading="flat", rasterized=True)
        ax.invert_yaxis()
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("page rank (overall)")
        fig.colorbar(mesh, ax=ax, label="fraction of samples dirty in the bin")
    ax.set_title(f"Dirtying probability over time (top {r.counts.shape[0]} pages)")
    return fig


def plot_heatmap(a: Analysis) -> Figure:
    """Address x time heatmap like `damo report heats`, unmapped gaps cut out of the address axis."""
    h = a.heatmap
    fig, ax = plt.subplots(figsize=(10, 6))
    if h.total_pages == 0 or h.counts.sum() == 0:
        _empty(ax, "no page was dirtied in this trace")
    else:
        frac = h.fraction()
        positive = frac[frac > 0]
        norm = LogNorm(vmin=max(positive.min(), 1e-6), vmax=max(positive.max(), 1e-5))
        edges = np.arange(h.counts.shape[0] + 1) * h.total_pages / h.counts.shape[0]
        mesh = ax.pcolormesh(h.time_edges, edges, np.ma.masked_equal(frac, 0), cmap="inferno",
                             norm=norm, shading="flat", rasterized=True)
        ax.set_facecolor("black")
        ticks, labels = _range_ticks(a)
        ax.set_yticks(ticks, labels, fontsize=7)
        for tick in ticks[1:]:
            ax.axhline(tick, color="white", lw=0.3, alpha=0.6)
        ax.set_ylim(0, h.total_pages)
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel(f"address (mapped ranges only, {h.total_pages * a.page_size / MIB:.1f} MiB)")
        fig.colorbar(mesh, ax=ax, label="fraction of pages dirty per sample (log)")
    ax.set_title("Where and when memory is dirtied")
    fig.tight_layout()
    return fig


def _range_ticks(a: Analysis, most: int = 12) -> tuple[list[float], list[str]]:
    """Ticks at the starts of the largest address ranges, labelled pid:address, never closer
    than 1/25 of the axis so labels do not overlap."""
    gap = a.heatmap.total_pages / 25
    ranges = []
    for r in sorted(a.heatmap.ranges, key=lambda r: r.end - r.start, reverse=True):
        if len(ranges) < most and all(abs(r.first_page - c.first_page) >= gap for c in ranges):
            ranges.append(r)
    ranges.sort(key=lambda r: r.first_page)
    pid = {p.row: p.pid for p in a.processes}
    return ([float(r.first_page) for r in ranges],
            [f"{pid.get(r.process, r.process)}:{r.start:#x}" for r in ranges])


def plot_working_set(a: Analysis) -> Figure:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    shown = False
    for ws in a.working_sets:
        keep = ws.complete
        if keep.any():
            ax.step(ws.start[keep], ws.distinct_pages[keep] * a.page_size / MIB, where="post",
                    label=f"{ws.window:g} s windows")
            shown = True
    if shown:
        ax.set_xlabel("window start (s)")
        ax.set_ylabel("pages dirtied at least once (MiB)")
        ax.legend(fontsize=8)
    else:
        _empty(ax, "the trace is shorter than the smallest complete window")
    ax.set_title("Working set (pages dirtied at least once per window)")
    return fig


def _barh(ax, labels: list[str], values: np.ndarray, xlabel: str) -> None:
    y = np.arange(len(labels))
    ax.barh(y, values, color="tab:green")
    ax.set_yticks(y, [_shorten(s) for s in labels], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)


def _shorten(text: str, width: int = 48) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _scaled_mb(a: Analysis, page_samples: np.ndarray) -> np.ndarray:
    """Dirty page-samples as average MB/s over the trace."""
    return page_samples * a.page_size / max(a.duration, 1e-12) / 1e6


def _bar_figure(title: str, labels: list[str], page_samples: list[float], xlabel: str,
                a: Analysis, empty_text: str) -> Figure:
    """Horizontal bars of dirtied memory (as average MB/s over the trace), largest on top."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    if not labels:
        _empty(ax, empty_text)
    else:
        _barh(ax, labels, _scaled_mb(a, np.array(page_samples, dtype=float)), xlabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_regions(a: Analysis, most: int = 15) -> Figure:
    stats = a.region_stats[:most]
    return _bar_figure("Where memory is dirtied (by region)",
                       [f"{s.label} [{s.kind}]" for s in stats],
                       [s.dirty_page_samples for s in stats],
                       "dirtied memory, average over the trace (MB/s)", a,
                       "no page was dirtied in this trace")


def plot_symbols(a: Analysis, most: int = 20) -> Figure:
    syms = a.symbols[:most]
    why = "; ".join(f"{p}: {r}" for p, r in list(a.elf_skipped.items())[:3])
    return _bar_figure("Hottest ELF data symbols",
                       [f"{s.name} ({s.section}, {s.path.rsplit('/', 1)[-1]})" for s in syms],
                       [s.weighted_page_samples for s in syms],
                       "dirtied memory in the symbol's pages, byte-share weighted (MB/s)", a,
                       "no dirtied page lies in an ELF data symbol" + (f"\n({why})" if why else ""))


FIGURES: dict[str, Callable[[Analysis], Figure]] = {
    "top100": lambda a: plot_top(a, 100),
    "top500": lambda a: plot_top(a, 500),
    "cdf": plot_cdf,
    "over_time": plot_over_time,
    "top_over_time": plot_top_over_time,
    "heatmap": plot_heatmap,
    "working_set": plot_working_set,
    "regions": plot_regions,
    "symbols": plot_symbols,
}


def write_plots(a: Analysis, out_dir: Path) -> list[Path]:
    """Writes every figure in every format; returns the files written."""
    written = []
    for name, make in FIGURES.items():
        fig = make(a)
        try:
            for fmt in FORMATS:
                path = out_dir / f"{name}.{fmt}"
                fig.savefig(path, dpi=110)  # meshes are rasterized, so SVGs stay small
                written.append(path)
        finally:
            plt.close(fig)
    return written
