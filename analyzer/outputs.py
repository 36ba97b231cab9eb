"""Data files of an analysis (summary.json, pages.csv, regions.csv, symbols.csv) and the terminal summary.

Why plain JSON/CSV: users load them in notebooks, spreadsheets or other tools; the column names
carry their units. `summary_dict` is also what the HTML report shows as headline figures.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from calm.analyzer.model import Analysis

THRESHOLDS = (0.01, 0.1, 0.5, 0.9)
MIB = 1 << 20


def _process_summary(a: Analysis, row: int | None) -> dict:
    pages = a.pages if row is None else a.pages.take(np.flatnonzero(a.pages.process == row))
    top = a.ranking(100, row)
    return {
        "dirtied_pages": len(pages),
        "dirtied_mib": len(pages) * a.page_size / MIB,
        "dirty_page_samples": int(pages.dirty.sum()),
        "mean_p": float(pages.p.mean()) if len(pages) else 0.0,
        "top100_mean_p": float(top.p.mean()) if len(top) else 0.0,
        "pages_with_p_above": {str(t): c for t, c in a.count_above(THRESHOLDS, row).items()},
    }


def summary_dict(a: Analysis) -> dict:
    """Headline figures of the analysis, JSON-ready."""
    tl = a.timeline
    rate = tl.dirty_rate_mb_s(a.page_size)
    pid_of = {p.row: p.pid for p in a.processes}
    top = a.ranking(10)
    return {
        "trace": a.trace_path,
        "backend": a.info.backend,
        "page_size": a.page_size,
        "interval_requested_s": a.info.interval,
        "interval_measured_s": a.interval,
        "samples": a.n_samples,
        "duration_s": a.duration,
        "probability": {
            "p": "dirty samples / samples in which the page was mapped (per sample)",
            "p_per_second": f"1 - (1 - p) ** (1 / {a.interval:.6g}): chance of at least one "
                            "write in a second, assuming independent intervals",
        },
        "service": _process_summary(a, None),
        "processes": [
            {"pid": p.pid, "row": p.row, "name": p.name, "first_sample": p.first_sample,
             "last_sample": p.last_sample, "exited": p.exit_sample >= 0, **_process_summary(a, p.row)}
            for p in a.processes
        ],
        "dirty_pages_per_sample": {"mean": float(tl.dirty_pages.mean()), "max": int(tl.dirty_pages.max())},
        "dirty_rate_mb_s": {"mean": float(rate.mean()), "max": float(rate.max())},
        "writable_mib": {"mean": float(tl.writable_pages.mean() * a.page_size / MIB),
                         "max": float(tl.writable_pages.max() * a.page_size / MIB)},
        "working_set_mib": {
            f"{ws.window:g}s": (
                {"mean": float(ws.distinct_pages[ws.complete].mean() * a.page_size / MIB),
                 "max": float(ws.distinct_pages[ws.complete].max() * a.page_size / MIB),
                 "windows": int(ws.complete.sum())} if ws.complete.any() else None)
            for ws in a.working_sets
        },
        "top_pages": [
            {"pid": pid_of[int(r)], "address": hex(int(v) * a.page_size), "p": float(p),
             "dirty_samples": int(d), "mapped_samples": int(m)}
            for r, v, p, d, m in zip(top.process, top.vpn, top.p, top.dirty, top.mapped)
        ],
        "regions": [
            {"kind": s.kind, "label": s.label, "pages": s.pages,
             "dirty_page_samples": s.dirty_page_samples, "max_p": s.max_p}
            for s in a.region_stats[:20]
        ],
        "symbols": [
            {"path": s.path, "name": s.name, "section": s.section, "address": hex(s.address),
             "size": s.size, "pages": s.pages, "dirty_page_samples": s.dirty_page_samples,
             "weighted_page_samples": round(s.weighted_page_samples, 3),
             "max_p": s.max_p}
            for s in a.symbols[:20]
        ],
        "elf_skipped": a.elf_skipped,
        "notes": a.notes,
    }


def write_pages_csv(a: Analysis, path: Path) -> None:
    """One row per dirtied page, most often dirtied first."""
    ranked = a.ranking()
    pid_of = np.zeros(max((p.row for p in a.processes), default=0) + 1, dtype=np.int64)
    for p in a.processes:
        pid_of[p.row] = p.pid
    labels = [r.label for r in a.regions] + ["(no recorded region)"]
    kinds = [r.kind for r in a.regions] + ["unmapped"]
    region = np.where(ranked.region >= 0, ranked.region, len(a.regions))
    columns = zip(range(1, len(ranked) + 1), pid_of[ranked.process].tolist(),
                  (ranked.vpn * np.uint64(a.page_size)).tolist(), ranked.dirty.tolist(),
                  ranked.mapped.tolist(), ranked.p.tolist(), a.p_per_second(ranked.p).tolist(),
                  region.tolist())
    with open(path, "w", newline="") as f:
        f.write("rank,pid,address,dirty_samples,mapped_samples,p_per_sample,p_per_second,"
                "region_kind,region\n")
        writer = csv.writer(f)
        for rank, pid, addr, dirty, mapped, p, ps, reg in columns:
            writer.writerow((rank, pid, f"{addr:#x}", dirty, mapped, f"{p:.6g}", f"{ps:.6g}",
                             kinds[reg], labels[reg]))


def write_table_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_data(a: Analysis, out_dir: Path) -> list[Path]:
    files = [out_dir / n for n in ("summary.json", "pages.csv", "regions.csv", "symbols.csv")]
    files[0].write_text(json.dumps(summary_dict(a), indent=2) + "\n")
    write_pages_csv(a, files[1])
    write_table_csv(files[2], ["kind", "region", "processes", "pages", "dirty_page_samples", "max_p"],
                    [(s.kind, s.label, len(s.processes), s.pages, s.dirty_page_samples, f"{s.max_p:.6g}")
                     for s in a.region_stats])
    write_table_csv(files[3], ["path", "symbol", "section", "address", "size_bytes", "pages",
                               "dirty_page_samples", "weighted_page_samples", "max_p", "processes"],
                    [(s.path, s.name, s.section, hex(s.address), s.size, s.pages,
                      s.dirty_page_samples, f"{s.weighted_page_samples:.6g}", f"{s.max_p:.6g}",
                      len(s.processes)) for s in a.symbols])
    return files


def summary_text(a: Analysis, most: int = 5) -> str:
    """The short summary `calm analyze` prints."""
    s = summary_dict(a)
    svc = s["service"]
    lines = [
        f"{a.trace_path}: {a.n_samples} samples over {a.duration:.1f} s "
        f"(interval {a.interval:.3g} s, backend {a.info.backend}), {len(a.processes)} process(es)",
        f"dirtied pages: {svc['dirtied_pages']:,} ({svc['dirtied_mib']:.1f} MiB); "
        f"dirty rate mean {s['dirty_rate_mb_s']['mean']:.2f} MB/s, max {s['dirty_rate_mb_s']['max']:.2f} MB/s",
        "pages with p > " + ", ".join(f"{t}: {c:,}" for t, c in svc["pages_with_p_above"].items())
        + f"; top-100 mean p {svc['top100_mean_p']:.3f} per sample",
    ]
    ws = [f"{k} {v['mean']:.1f} MiB" for k, v in s["working_set_mib"].items() if v]
    if ws:
        lines.append("working set (mean): " + ", ".join(ws))
    for r in a.region_stats[:most]:
        lines.append(f"  region {r.label} [{r.kind}]: {r.pages:,} pages, max p {r.max_p:.3f}")
    for sym in a.symbols[:most]:
        lines.append(f"  symbol {sym.name} ({sym.section} of {sym.path}): {sym.pages} pages, "
                     f"max p {sym.max_p:.3f}")
    lines += [f"note: {n}" for n in a.notes]
    return "\n".join(lines)
