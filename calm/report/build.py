"""Assembles the HTML report from an `Analysis` (analyzer) and, optionally, replay results.

Why from objects and not from files: `calm demo` already holds the Analysis in memory and must
not analyse the trace twice; `calm report` analyses the trace itself. The replay part reads only
the results.json contract (replay/outputs.py), so a report can be rebuilt without re-replaying.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from html import escape
from pathlib import Path

import numpy as np

from calm.core.version import __version__
from calm.core import units
from calm.core.paths import write_private
from calm.report.figures import analysis_images
from calm.report.html import Column, Raw, card, figure, join, key_values, section, table, tag
from calm.report.migrate_section import migrate_section
from calm.report.replay_section import no_replay_section, overview_card, replay_section
from calm.report.style import CSS

TOP_PAGES_SHOWN = 10
REGIONS_SHOWN = 12
SYMBOLS_SHOWN = 12
BACKEND_MEANING = {
    "soft-dirty": "the kernel's soft-dirty bit (clear_refs + pagemap): every write is seen",
    "hash": "page hashes compared between samples: a write that restores a page's bytes is not seen",
}


def build_report(analysis, results: dict | None = None, *, results_source: str = "",
                 migrations: list | None = None) -> str:
    """The whole report as one HTML string; `migrations` are (path, record) of migrate.json files
    (calm.report.migrate_section.load_migration)."""
    from calm.analyzer.outputs import summary_dict

    summary = summary_dict(analysis)
    name = Path(analysis.trace_path).name
    body = [_header(analysis, name), _toc(bool(migrations)), "<main><div class=\"wrap\">",
            _overview(analysis, summary, results),
            _recording(analysis, summary),
            _dirtying(analysis, summary),
            _where(analysis, summary),
            (replay_section(analysis, results, results_source) if results is not None
             else no_replay_section(analysis)),
            migrate_section(migrations) if migrations else "",
            _units(), "</div></main>", _footer()]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>calm report: {escape(name)}</title>"
            f"<style>{CSS}</style></head><body>"
            + "".join(str(b) for b in body) + "</body></html>\n")


def write_report(html: str, output: Path, *, force: bool) -> Path:
    """One private file, never written through a symlink (calm.core.paths)."""
    return write_private(output, html, force=force)


# -- sections -----------------------------------------------------------------------------------

def _header(a, name: str) -> Raw:
    info = a.info
    sub = (f"recorded on {info.hostname} (kernel {info.kernel_release}) at {info.start_time} with the "
           f"{info.backend} backend: {_span(a)}")
    return tag("header", tag("div", join([
        tag("h1", join([tag("span", "calm", class_="tool"), " report · ", name])),
        tag("p", sub)]), class_="wrap"), class_="top")


def _span(a) -> str:
    """The recording's span, printed as every command prints it (FORMAT.md)."""
    return units.recording_span(a.n_samples, a.duration, a.baseline_read, a.info.interval)


def _toc(with_migrations: bool = False) -> Raw:
    links = [("overview", "Overview"), ("recording", "Recording"), ("dirtying", "How often pages are dirtied"),
             ("where", "Where memory is dirtied"), ("replay", "Migration replay"),
             *([("migrations", "Live migrations")] if with_migrations else []), ("units", "Units")]
    return tag("nav", tag("div", join(tag("a", label, href=f"#{anchor}") for anchor, label in links),
                          class_="wrap"), class_="toc")


def _overview(a, s: dict, results: dict | None) -> Raw:
    svc = s["service"]
    rate = s["dirty_rate_mb_s"]["mean"] * 1e6
    ws1 = s["working_set_mib"].get("1s")
    cards = [
        card("Recorded", f"{a.duration:.1f} s", f"{a.n_samples:,} samples every {a.interval * 1000:.0f} ms"
             + (f", after a {a.baseline_read:.1f} s baseline read"
                if units.baseline_worth_saying(a.baseline_read, a.info.interval) else "")),
        card("Backend", a.info.backend, "how dirty pages were detected"),
        card("Processes", f"{len(a.processes)}", ", ".join(f"{p.label} ({p.pid})" for p in a.processes[:3])
             + (" …" if len(a.processes) > 3 else "")),
        card("Memory dirtied", units.mib(svc["dirtied_pages"] * a.page_size),
             f"{svc['dirtied_pages']:,} distinct pages, each counted once"
             + (f" ({svc['shared_pages']:,} shared)" if svc.get("shared_pages") else "")),
        card("Mean dirty rate", f"{units.sig(rate / 1e6)} MB/s", f"{units.sig(rate * 8 / 1e6)} Mbit/s; "
             f"peak {units.sig(s['dirty_rate_mb_s']['max'])} MB/s"),
        card("Hot pages (p > 0.5)", f"{svc['pages_with_p_above']['0.5']:,}",
             f"top-100 mean p = {units.probability(svc['top100_mean_p'])} per sample"),
    ]
    if ws1:
        cards.append(card("Working set, 1 s", f"{units.sig(ws1['mean'])} MiB", f"max {units.sig(ws1['max'])} MiB"))
    if svc.get("resident_mib"):
        cards.append(card("Resident memory", f"{units.sig(svc['resident_mib']['max'])} MiB",
                          "the service's peak, each page once (sum of Pss)"))
    if a.observer:
        o = a.observer
        cards.append(card("Observer cost", f"{o.cpu_share:.0%} of a core",
                          f"period {o.period_mean * 1000:.0f} ms mean, {o.period_p95 * 1000:.0f} ms p95 "
                          f"(asked {o.interval * 1000:g} ms)"))
    lowest = overview_card(results) if results is not None else None
    if lowest is not None:
        cards.append(lowest)
    notes = [tag("div", f"Note: {n}", class_="note") for n in a.notes]
    lead = ("calm measured, interval by interval, which memory pages this service wrote, and "
            + ("replayed those writes through live-migration algorithms to find the one that "
               "violates the service's SLA least." if results is not None else
               "shows here how often and where it writes them."))
    return section("overview", "Overview", lead, [tag("div", join(cards), class_="cards"), *notes])


def _recording(a, s: dict) -> Raw:
    info = a.info
    command = " ".join(info.command) if info.command else "attached to running process(es)"
    if not info.cmdline_recorded:
        command += " (command lines not recorded (--no-cmdline))"
    pairs = [
        ("trace file", tag("code", a.trace_path)),
        ("backend", join([tag("strong", info.backend), " — ", BACKEND_MEANING.get(info.backend, "")])),
        ("interval", f"{info.interval:g} s requested, {a.interval:.4g} s measured (mean time between reads)"),
        ("samples", _span(a)),
        ("baseline read", f"{a.baseline_read:.2f} s from the start until the first sample (opening the "
                          "targets and reading their memory once; writes then are in no sample)"),
        ("page size", f"{a.page_size:,} bytes"),
        ("started", f"{info.start_time} (UTC)"),
        ("host", f"{info.hostname}, Linux {info.kernel_release}"),
        ("command", tag("code", command)),
        ("recording ended", f"{info.end_reason or 'unknown'} (status: {info.status})"),
        ("recorded by", f"calm {info.tool_version}, trace format v{info.version}"),
    ]
    if a.observer:
        from calm.analyzer.outputs import observer_text

        pairs.append(("observer cost", observer_text(a.observer).removeprefix("observer: ")))
    per_process = {p["row"]: p for p in s["processes"]}
    rows = []
    for p in a.processes:
        ps = per_process.get(p.row, {})
        shared = ps.get("shared_pages_written")
        argv = " ".join(p.cmdline) or p.exe + ("" if info.cmdline_recorded else " (argv not recorded)")
        rows.append([p.pid, p.ppid, p.label, tag("code", p.exe if p.title else argv),
                     f"{max(p.first_sample, 0)}–{p.last_sample}",
                     _exited(p),
                     units.mib(ps.get("private_pages", 0) * a.page_size),
                     "unknown" if shared is None and a.shared_objects else units.mib((shared or 0) * a.page_size)])
    procs = table([Column("pid", True), Column("ppid", True), Column("name"), Column("program"),
                   Column("samples"), Column("exited"), Column("private dirtied", True),
                   Column("shared written", True)], rows,
                  caption="Processes followed during the recording, named by the role they give themselves; "
                          "shared pages are counted once for the service (soft-dirty says which process "
                          "wrote them, the hash backend cannot)")
    return section("recording", "Recording", "What was recorded, where, and how.",
                   [key_values(pairs), procs])


def _exited(p) -> str:
    """FORMAT.md: exit_sample is the first sample without the process."""
    if p.exit_sample < 0:
        return "no"
    if p.execed:
        return f"exec'd after sample {p.exit_sample - 1} (next row)"
    if p.exit_sample <= max(p.first_sample, 0):
        return "yes, before its first sample"
    return f"yes, after sample {p.exit_sample - 1}"


def _dirtying(a, s: dict) -> Raw:
    images = analysis_images(a, ("top100", "top500", "cdf", "over_time", "top_over_time", "heatmap",
                                 "working_set"))
    svc = s["service"]
    n = svc["dirtied_pages"]
    above = svc["pages_with_p_above"]
    interval = f"{a.interval:.3g} s"
    low = n - above["0.01"]
    rate = s["dirty_rate_mb_s"]
    ws = s["working_set_mib"]
    ws_text = "; ".join(f"{k} windows: mean {units.sig(v['mean'])} MiB" for k, v in ws.items() if v)
    figs = [
        figure(images["top100"], "Dirtying probability, top 100 pages", [
            f"Each bar is one page; its height is the fraction of samples ({interval} each) in which "
            "the page was written. The right axis gives the same as the chance of a write within one "
            "second.",
            f"Here the 100 hottest pages have a mean p of {units.probability(svc['top100_mean_p'])}: "
            "a pre-copy migration sends them again and again, so they decide how long it lasts.",
        ], alt="bar chart of the 100 most often dirtied pages", fig_id="fig-top100"),
        figure(images["top500"], "Dirtying probability, top 500 pages", [
            "The same ranking over 500 pages shows how quickly the hot set falls off.",
            f"{above['0.5']:,} pages are written in more than half of the samples, "
            f"{above['0.1']:,} in more than one in ten.",
        ], alt="line chart of the 500 most often dirtied pages", fig_id="fig-top500"),
        figure(images["cdf"], "Distribution of the probability", [
            f"Of the {n:,} pages written at least once, {low:,} ({100 * low / max(n, 1):.0f} %) have "
            "p ≤ 0.01: a migration copies them once and they stay clean.",
            "A curve that jumps late (at high p) means a small, very hot working set.",
        ], alt="cumulative distribution of dirtying probabilities", fig_id="fig-cdf"),
        figure(images["over_time"], "Dirtying over time", [
            f"Dirty pages per sample, the dirty rate (mean {units.sig(rate['mean'])} MB/s, peak "
            f"{units.sig(rate['max'])} MB/s) and the share of the top pages written in each sample.",
            "Steps show the service's phases; a migration link slower than the dirty rate can "
            "never converge without slowing the service.",
        ], alt="dirty pages, dirty rate and hot-set share over time", fig_id="fig-over-time"),
        figure(images["top_over_time"], "The hot pages over time", [
            "Each row is one of the overall top-100 pages, each column a time bin; the colour is the "
            "fraction of that bin's samples in which the page was dirty.",
            "Bands that switch on and off are pages whose heat depends on the phase of the service.",
        ], alt="raster of the top 100 pages over time", fig_id="fig-top-over-time"),
        figure(images["heatmap"], "Where and when memory is dirtied", [
            "Address against time, like damo's heatmap: unmapped gaps are cut out of the address axis, "
            "ticks give pid:address of the largest mapped ranges. Black: not written.",
        ], alt="heatmap of dirtied addresses over time", wide=True, fig_id="fig-heatmap"),
        figure(images["working_set"], "Working set", [
            "Distinct pages written at least once in consecutive windows of 1, 10 and 60 s "
            "(complete windows only).",
            (ws_text + ".") if ws_text else "The trace is shorter than the smallest window.",
        ], alt="working set per window size over time", fig_id="fig-working-set"),
    ]
    top = a.ranking(TOP_PAGES_SHOWN)
    pid_of = {p.row: p.pid for p in a.processes}
    labels = [r.label for r in a.regions]
    p_second = a.p_per_second(top.p) if len(top) else np.empty(0)
    rows = [[i + 1, pid_of.get(int(r), "shared"), tag("code", f"{int(v) * a.page_size:#x}"),
             units.probability(p), units.probability(ps), f"{int(d):,} / {int(m):,}",
             _region_cell(labels[int(reg)]) if reg >= 0 else "(no recorded region)"]
            for i, (r, v, p, ps, d, m, reg) in enumerate(zip(top.process, top.vpn, top.p, p_second,
                                                               top.dirty, top.mapped, top.region))]
    hot = table([Column("rank", True), Column("pid", True), Column("address or offset"),
                 Column("p per sample", True), Column("p per second", True),
                 Column("dirty / mapped samples", True), Column("region")], rows,
                caption=f"The {TOP_PAGES_SHOWN} most often dirtied pages (all of them: pages.csv of calm analyze)")
    return section("dirtying", "How often pages are dirtied",
                   f"p is the fraction of samples in which a page was written, over the samples in "
                   f"which it was mapped; one sample covers {interval}. Per second: 1 − (1 − p)^(1/{interval}).",
                   [*figs, hot])


def _region_cell(label: str) -> Raw:
    """A region label with directories dropped, the full label as its tooltip."""
    return tag("span", _short_paths(label), title=label)


def _where(a, s: dict) -> Raw:
    images = analysis_images(a, ("regions", "symbols"))
    avg = lambda page_samples: page_samples * a.page_size / max(a.duration, 1e-12)  # noqa: E731 bytes/s
    region_rows = [[_region_cell(r.label), r.kind, len(r.mapped_by),
                    len(r.processes) if r.writers_known else "unknown", units.mib(r.pages * a.page_size),
                    f"{units.sig(avg(r.dirty_page_samples) / 1e6)} MB/s", units.probability(r.max_p)]
                   for r in a.region_stats[:REGIONS_SHOWN]]
    regions = table([Column("region"), Column("kind"), Column("mapped by", True), Column("written by", True),
                     Column("dirtied", True), Column("dirty rate", True), Column("max p", True)],
                    region_rows or [["no page was dirtied", "", "", "", "", "", ""]],
                    caption="Dirtied memory by region: mapped by / written by = processes, dirtied = "
                            "distinct pages written (a shared page once), dirty rate = written bytes per "
                            "second averaged over the trace")
    sym_rows = [[tag("code", sym.name), sym.section, tag("span", Path(sym.path).name, title=sym.path),
                 f"{sym.size:,} B", sym.pages, len(sym.mapped_by),
                 f"{units.sig(avg(sym.weighted_page_samples) / 1e6)} MB/s", units.probability(sym.max_p)]
                for sym in a.symbols[:SYMBOLS_SHOWN]]
    skipped = "; ".join(f"{Path(p).name}: {why}" for p, why in list(a.elf_skipped.items())[:3])
    symbols = table([Column("symbol"), Column("section"), Column("object"), Column("size", True),
                     Column("pages", True), Column("mapped by", True), Column("dirty rate", True),
                     Column("max p", True)],
                    sym_rows or [["no dirtied page lies in an ELF data symbol", "", "", "", "", "", "", ""]],
                    caption="Hottest ELF data symbols (.data, .bss): dirty rate counts each page by the "
                            "share of its bytes the symbol covers")
    region_text = (f"The busiest region is {a.region_stats[0].phrase}." if a.region_stats
                   else "No page was dirtied.")
    sym_text = (f"The hottest symbol is {a.symbols[0].name} in {a.symbols[0].section} of "
                f"{Path(a.symbols[0].path).name}." if a.symbols else
                "No dirtied page lies in a data symbol of an ELF file" + (f" ({skipped})." if skipped else "."))
    return section("where", "Where memory is dirtied",
                   "Every dirtied page is attributed to the memory-map region it lies in (heap, stack, "
                   "anonymous, or a file), and pages of ELF files' data sections to their symbols.", [
                       figure(images["regions"], "By region", [
                           "Bars give the written bytes per second, averaged over the trace, of each "
                           "kind of memory.", region_text], alt="bar chart of dirtying by region",
                           fig_id="fig-regions"),
                       regions,
                       figure(images["symbols"], "By ELF symbol", [
                           "Global and static variables of the service's binaries and libraries whose "
                           "pages were written; a page shared by several symbols is split by bytes.",
                           sym_text], alt="bar chart of the hottest ELF data symbols", fig_id="fig-symbols"),
                       symbols])


def _short_paths(label: str) -> str:
    """'anonymous (.bss of /usr/lib/x/libz.so)' -> 'anonymous (.bss of libz.so)'."""
    return re.sub(r"/(?:[^/\s()]+/)+", "", label)


def _units() -> Raw:
    items = [("memory", "binary units: 1 MiB = 2²⁰ bytes, 1 GiB = 2³⁰ bytes"),
             ("dirty rate", "MB/s = 10⁶ bytes per second (and Mbit/s = 10⁶ bit/s beside it)"),
             ("bandwidth", "Mbit/s = 10⁶ bit/s, Gbit/s = 10⁹ bit/s, as network links are rated"),
             ("time, cost", "seconds; cost is seconds of violated SLA (the expected time during which "
                            "requests miss their deadline, plus every second of downtime)"),
             ("p", "probability that a page is written within one sample (or one second, where said)")]
    dl = tag("dl", join(join([tag("dt", k), tag("dd", v)]) for k, v in items), class_="units")
    return section("units", "Units", "The same units everywhere in this report.", [dl])


def _footer() -> Raw:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return tag("footer", tag("div", f"Generated by calm {__version__} at {now}. One self-contained file: "
                                    "figures are embedded, nothing is fetched.", class_="wrap"))


