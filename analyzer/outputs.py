"""Data files of an analysis (summary.json, pages.csv, regions.csv, symbols.csv) and the terminal summary.

Files are written through calm.core.paths (private, never through a symlink) into a folder the
command has checked, so they replace what is there.

Why plain JSON/CSV: users load them in notebooks, spreadsheets or other tools; the column names
carry their units. `summary_dict` is also what the HTML report shows as headline figures.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from calm.analyzer.model import Analysis
from calm.core.units import recording_span
from calm.core.paths import private_file, write_private

THRESHOLDS = (0.01, 0.1, 0.5, 0.9)
MIB = 1 << 20


def _process_summary(a: Analysis, row: int | None) -> dict:
    """Figures of the service (row None: each page once) or of one process (its private pages,
    plus with soft-dirty the shared pages it wrote; a hash trace cannot say who wrote those)."""
    pages = a.pages if row is None else a.pages.take(np.flatnonzero(a.pages.process == row))
    top = a.ranking(100, row)
    if row is None:
        shared = int(np.count_nonzero(a.is_shared(a.pages.process)))
        extra = {"shared_pages": shared, "private_pages": len(pages) - shared}
        dirtied = len(pages)
    else:
        written = None if a.shared_written is None else a.shared_written.get(row, 0)
        extra = {"private_pages": len(pages), "shared_pages_written": written}
        dirtied = len(pages) + (written or 0)
    return {
        "dirtied_pages": dirtied,
        "dirtied_mib": dirtied * a.page_size / MIB,
        **extra,
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
    resident = tl.resident_pages
    return {
        "trace": a.trace_path,
        "backend": a.info.backend,
        "page_size": a.page_size,
        "interval_requested_s": a.info.interval,
        "interval_measured_s": a.interval,
        "samples": a.n_samples,
        "duration_s": a.duration,
        "baseline_read_s": a.baseline_read,
        "probability": {
            "p": "dirty samples / samples in which the page was mapped (per sample)",
            "p_per_second": f"1 - (1 - p) ** (1 / {a.interval:.6g}): chance of at least one "
                            "write in a second, assuming independent intervals",
        },
        "service": {**_process_summary(a, None),
                    "resident_mib": ({"mean": float(resident.mean() * a.page_size / MIB),
                                      "max": float(resident.max() * a.page_size / MIB)}
                                     if resident is not None else None)},
        "writer_known": a.shared_written is not None,
        "processes": [
            {"pid": p.pid, "row": p.row, "name": p.name, "title": p.title, "label": p.label,
             "first_sample": p.first_sample, "last_sample": p.last_sample, "exited": p.exit_sample >= 0 and not p.execed,
             "execed": p.execed,
             **_process_summary(a, p.row)}
            for p in a.processes
        ],
        "shared_objects": [
            {"label": o.label, "path": o.path, "inode": o.inode,
             "mapped_by": sorted(pid_of[r] for r in o.mapped_by if r in pid_of),
             "dirtied_pages": int(np.count_nonzero(a.pages.process == a.n_spaces + o.index))}
            for o in a.shared_objects
        ],
        "observer": a.observer.to_dict() if a.observer else None,
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
            ({"pid": pid_of[int(r)], "address": hex(int(v) * a.page_size)} if not a.is_shared(r) else
             {"pid": None, "shared_object": a.shared_object(r).label, "offset": hex(int(v) * a.page_size)})
            | {"p": float(p), "dirty_samples": int(d), "mapped_samples": int(m)}
            for r, v, p, d, m in zip(top.process, top.vpn, top.p, top.dirty, top.mapped)
        ],
        "regions": [
            {"kind": s.kind, "label": s.label, "pages": s.pages,
             "dirty_page_samples": s.dirty_page_samples, "max_p": s.max_p,
             "mapped_by": _pids(a, s.mapped_by),
             "written_by": _pids(a, s.processes) if s.writers_known else None}
            for s in a.region_stats[:20]
        ],
        "symbols": [
            {"path": s.path, "name": s.name, "section": s.section, "address": hex(s.address),
             "size": s.size, "pages": s.pages, "dirty_page_samples": s.dirty_page_samples,
             "weighted_page_samples": round(s.weighted_page_samples, 3),
             "max_p": s.max_p, "mapped_by": _pids(a, s.mapped_by), "dirtied_in": _pids(a, s.processes)}
            for s in a.symbols[:20]
        ],
        "elf_skipped": a.elf_skipped,
        "notes": a.notes,
    }


def _pids(a: Analysis, rows: set[int]) -> list[int]:
    pid_of = {p.row: p.pid for p in a.processes}
    return sorted(pid_of[r] for r in rows if r in pid_of)


def write_pages_csv(a: Analysis, path: Path) -> None:
    """One row per dirtied page of the service, most often dirtied first. A shared page has no pid
    (its region names the object) and its address is its offset in the object."""
    ranked = a.ranking()
    n_space = int(max(int(ranked.process.max()) + 1 if len(ranked) else 0, a.n_spaces if a.shared_objects else 0,
                      max((p.row for p in a.processes), default=0) + 1))
    pid_of = np.full(n_space, -1, dtype=np.int64)
    for p in a.processes:
        pid_of[p.row] = p.pid
    labels = [r.label for r in a.regions] + ["(no recorded region)"]
    kinds = [r.kind for r in a.regions] + ["unmapped"]
    region = np.where(ranked.region >= 0, ranked.region, len(a.regions))
    columns = zip(range(1, len(ranked) + 1), pid_of[ranked.process].tolist(),
                  (ranked.vpn * np.uint64(a.page_size)).tolist(), ranked.dirty.tolist(),
                  ranked.mapped.tolist(), ranked.p.tolist(), a.p_per_second(ranked.p).tolist(),
                  region.tolist())
    with private_file(path, force=True, text=True, newline="") as f:
        f.write("rank,pid,address,dirty_samples,mapped_samples,p_per_sample,p_per_second,"
                "region_kind,region\n")
        writer = csv.writer(f)
        for rank, pid, addr, dirty, mapped, p, ps, reg in columns:
            writer.writerow((rank, pid if pid >= 0 else "", f"{addr:#x}", dirty, mapped, f"{p:.6g}",
                             f"{ps:.6g}", kinds[reg], labels[reg]))


def write_table_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    with private_file(path, force=True, text=True, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_data(a: Analysis, out_dir: Path) -> list[Path]:
    files = [out_dir / n for n in ("summary.json", "pages.csv", "regions.csv", "symbols.csv")]
    write_private(files[0], json.dumps(summary_dict(a), indent=2) + "\n", force=True)
    write_pages_csv(a, files[1])
    write_table_csv(files[2], ["kind", "region", "mapped_by", "written_by", "pages", "dirty_page_samples",
                               "max_p", "mapped_by_pids"],
                    [(s.kind, s.label, len(s.mapped_by), len(s.processes) if s.writers_known else "unknown",
                      s.pages, s.dirty_page_samples, f"{s.max_p:.6g}", " ".join(map(str, _pids(a, s.mapped_by))))
                     for s in a.region_stats])
    write_table_csv(files[3], ["path", "symbol", "section", "address", "size_bytes", "pages",
                               "dirty_page_samples", "weighted_page_samples", "max_p", "dirtied_in",
                               "mapped_by"],
                    [(s.path, s.name, s.section, hex(s.address), s.size, s.pages,
                      s.dirty_page_samples, f"{s.weighted_page_samples:.6g}", f"{s.max_p:.6g}",
                      len(s.processes), len(s.mapped_by)) for s in a.symbols])
    return files


def summary_text(a: Analysis, most: int = 5) -> str:
    """The short summary `calm analyze` prints."""
    s = summary_dict(a)
    svc = s["service"]
    lines = [
        f"{a.trace_path}: {recording_span(a.n_samples, a.duration, a.baseline_read, a.info.interval)} "
        f"(interval {a.interval:.3g} s, backend {a.info.backend}), {len(a.processes)} process(es)",
        f"dirtied pages: {svc['dirtied_pages']:,} ({svc['dirtied_mib']:.1f} MiB, each page once"
        + (f"; {svc['shared_pages']:,} shared, {svc['private_pages']:,} private" if a.shared_objects else "")
        + f"); dirty rate mean {s['dirty_rate_mb_s']['mean']:.2f} MB/s, max {s['dirty_rate_mb_s']['max']:.2f} MB/s",
        "pages with p > " + ", ".join(f"{t}: {c:,}" for t, c in svc["pages_with_p_above"].items())
        + f"; top-100 mean p {svc['top100_mean_p']:.3f} per sample",
    ]
    if svc["resident_mib"]:
        lines.append(f"resident (each page once, sum of Pss): mean {svc['resident_mib']['mean']:.1f} MiB, "
                     f"max {svc['resident_mib']['max']:.1f} MiB")
    ws = [f"{k} {v['mean']:.1f} MiB" for k, v in s["working_set_mib"].items() if v]
    if ws:
        lines.append("working set (mean): " + ", ".join(ws))
    if len(a.processes) > 1:
        for p in sorted(s["processes"], key=lambda p: -p["dirtied_pages"])[:most]:
            shared = p["shared_pages_written"]
            lines.append(f"  process {p['pid']} {p['label']}: {p['private_pages']:,} private pages dirtied"
                         + (f", {shared:,} shared pages written" if shared else
                            ", shared writes unknown (hash backend)" if shared is None and a.shared_objects else ""))
    for o in s["shared_objects"][:most]:
        if o["dirtied_pages"]:
            lines.append(f"  shared {o['label']}: {o['dirtied_pages']:,} pages dirtied, mapped by "
                         f"{len(o['mapped_by'])} process(es)")
    for r in a.region_stats[:most]:
        lines.append(f"  region {r.label} [{r.kind}]: {r.pages:,} pages, max p {r.max_p:.3f}, "
                     f"mapped by {len(r.mapped_by)} process(es)")
    for sym in a.symbols[:most]:
        lines.append(f"  symbol {sym.name} ({sym.section} of {sym.path}): {sym.pages} pages, "
                     f"max p {sym.max_p:.3f}, mapped by {len(sym.mapped_by)} process(es)")
    if a.observer:
        lines.append(observer_text(a.observer))
    lines += [f"note: {n}" for n in a.notes]
    return "\n".join(lines)


def observer_text(o) -> str:
    """One line: the period calm achieved and what a round cost it."""
    return (f"observer: period {o.period_mean * 1000:.1f} ms mean, {o.period_p95 * 1000:.1f} ms p95 "
            f"(asked {o.interval * 1000:g} ms{', nice +' + str(o.nice) if o.nice else ''}); per round "
            f"{o.read_mean * 1000:.1f} ms reading (p95 {o.read_p95 * 1000:.1f}), "
            f"{o.cpu_mean * 1000:.1f} ms CPU (p95 {o.cpu_p95 * 1000:.1f}), "
            f"{o.pages_read_mean:,.0f} pages read; {o.cpu_share:.0%} of a core")
