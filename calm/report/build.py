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
from calm.report.figures import analysis_images, replay_images
from calm.report.html import Cell, Column, Raw, card, figure, join, key_values, section, table, tag
from calm.report.replay_results import best_algorithms
from calm.report.style import CSS

TOP_PAGES_SHOWN = 10
REGIONS_SHOWN = 12
SYMBOLS_SHOWN = 12
DISPLAY_NAMES = {"calm": "CALM", "clark": "Clark", "xen": "Xen", "qemu": "QEMU", "fixed": "Fixed"}
BACKEND_MEANING = {
    "soft-dirty": "the kernel's soft-dirty bit (clear_refs + pagemap): every write is seen",
    "hash": "page hashes compared between samples: a write that restores a page's bytes is not seen",
}


def build_report(analysis, results: dict | None = None, *, results_source: str = "") -> str:
    """The whole report as one HTML string."""
    from calm.analyzer.outputs import summary_dict

    summary = summary_dict(analysis)
    name = Path(analysis.trace_path).name
    body = [_header(analysis, name), _toc(), "<main><div class=\"wrap\">",
            _overview(analysis, summary, results),
            _recording(analysis, summary),
            _dirtying(analysis, summary),
            _where(analysis, summary),
            _replay(analysis, results, results_source) if results is not None else _no_replay(analysis),
            _units(), "</div></main>", _footer()]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>calm report: {escape(name)}</title>"
            f"<style>{CSS}</style></head><body>"
            + "".join(str(b) for b in body) + "</body></html>\n")


def write_report(html: str, output: Path) -> Path:
    output.write_text(html, encoding="utf-8")
    return output


# -- sections -----------------------------------------------------------------------------------

def _header(a, name: str) -> Raw:
    info = a.info
    sub = (f"recorded on {info.hostname} (kernel {info.kernel_release}) at {info.start_time}, "
           f"{a.duration:.1f} s with the {info.backend} backend")
    return tag("header", tag("div", join([
        tag("h1", join([tag("span", "calm", class_="tool"), " report · ", name])),
        tag("p", sub)]), class_="wrap"), class_="top")


def _toc() -> Raw:
    links = [("overview", "Overview"), ("recording", "Recording"), ("dirtying", "How often pages are dirtied"),
             ("where", "Where memory is dirtied"), ("replay", "Migration replay"), ("units", "Units")]
    return tag("nav", tag("div", join(tag("a", label, href=f"#{anchor}") for anchor, label in links),
                          class_="wrap"), class_="toc")


def _overview(a, s: dict, results: dict | None) -> Raw:
    svc = s["service"]
    rate = s["dirty_rate_mb_s"]["mean"] * 1e6
    ws1 = s["working_set_mib"].get("1s")
    cards = [
        card("Recorded", f"{a.duration:.1f} s", f"{a.n_samples:,} samples every {a.interval * 1000:.0f} ms"),
        card("Backend", a.info.backend, "how dirty pages were detected"),
        card("Processes", f"{len(a.processes)}", ", ".join(f"{p.name} ({p.pid})" for p in a.processes[:3])
             + (" …" if len(a.processes) > 3 else "")),
        card("Memory dirtied", units.mib(svc["dirtied_pages"] * a.page_size),
             f"{svc['dirtied_pages']:,} distinct pages"),
        card("Mean dirty rate", f"{units.sig(rate / 1e6)} MB/s", f"{units.sig(rate * 8 / 1e6)} Mbit/s; "
             f"peak {units.sig(s['dirty_rate_mb_s']['max'])} MB/s"),
        card("Hot pages (p > 0.5)", f"{svc['pages_with_p_above']['0.5']:,}",
             f"top-100 mean p = {units.probability(svc['top100_mean_p'])} per sample"),
    ]
    if ws1:
        cards.append(card("Working set, 1 s", f"{units.sig(ws1['mean'])} MiB", f"max {units.sig(ws1['max'])} MiB"))
    if results is not None:
        wins: dict[str, int] = {}
        for sc in results["scenarios"]:
            for alg in best_algorithms(sc):
                wins[alg] = wins.get(alg, 0) + 1
        if wins:
            most = max(wins.values())
            leaders = [DISPLAY_NAMES.get(a, a) for a, n in wins.items() if n == most]
            cards.append(card("Lowest migration cost", " and ".join(leaders),
                              f"in {most} of {len(results['scenarios'])} scenarios"
                              + (" each" if len(leaders) > 1 else ""), good=True))
    notes = [tag("div", f"Note: {n}", class_="note") for n in a.notes]
    lead = ("calm measured, interval by interval, which memory pages this service wrote, and "
            + ("replayed those writes through live-migration algorithms to find the one that "
               "violates the service's SLA least." if results is not None else
               "shows here how often and where it writes them."))
    return section("overview", "Overview", lead, [tag("div", join(cards), class_="cards"), *notes])


def _recording(a, s: dict) -> Raw:
    info = a.info
    command = " ".join(info.command) if info.command else "attached to running process(es)"
    pairs = [
        ("trace file", tag("code", a.trace_path)),
        ("backend", join([tag("strong", info.backend), " — ", BACKEND_MEANING.get(info.backend, "")])),
        ("interval", f"{info.interval:g} s requested, {a.interval:.4g} s measured (mean time between reads)"),
        ("samples", f"{a.n_samples:,} over {a.duration:.2f} s"),
        ("page size", f"{a.page_size:,} bytes"),
        ("started", f"{info.start_time} (UTC)"),
        ("host", f"{info.hostname}, Linux {info.kernel_release}"),
        ("command", tag("code", command)),
        ("recording ended", f"{info.end_reason or 'unknown'} (status: {info.status})"),
        ("recorded by", f"calm {info.tool_version}, trace format v{info.format_version}"),
    ]
    per_process = {p["row"]: p for p in s["processes"]}
    rows = []
    for p in a.processes:
        ps = per_process.get(p.row, {})
        rows.append([p.pid, p.ppid, p.name, tag("code", " ".join(p.cmdline) or p.exe),
                     f"{max(p.first_sample, 0)}–{p.last_sample}",
                     "yes, at sample %d" % p.exit_sample if p.exit_sample >= 0 else "no",
                     units.mib(ps.get("dirtied_pages", 0) * a.page_size)])
    procs = table([Column("pid", True), Column("ppid", True), Column("name"), Column("command line"),
                   Column("samples"), Column("exited"), Column("memory dirtied", True)], rows,
                  caption="Processes followed during the recording")
    return section("recording", "Recording", "What was recorded, where, and how.",
                   [key_values(pairs), procs])


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
    rows = [[i + 1, pid_of.get(int(r), int(r)), tag("code", f"{int(v) * a.page_size:#x}"),
             units.probability(p), units.probability(ps), f"{int(d):,} / {int(m):,}",
             _region_cell(labels[int(reg)]) if reg >= 0 else "(no recorded region)"]
            for i, (r, v, p, ps, d, m, reg) in enumerate(zip(top.process, top.vpn, top.p, p_second,
                                                               top.dirty, top.mapped, top.region))]
    hot = table([Column("rank", True), Column("pid", True), Column("page address"),
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
    region_rows = [[_region_cell(r.label), r.kind, len(r.processes), units.mib(r.pages * a.page_size),
                    f"{units.sig(avg(r.dirty_page_samples) / 1e6)} MB/s", units.probability(r.max_p)]
                   for r in a.region_stats[:REGIONS_SHOWN]]
    regions = table([Column("region"), Column("kind"), Column("processes", True), Column("dirtied", True),
                     Column("dirty rate", True), Column("max p", True)],
                    region_rows or [["no page was dirtied", "", "", "", "", ""]],
                    caption="Dirtied memory by region: dirtied = distinct pages written, dirty rate = "
                            "written bytes per second averaged over the trace")
    sym_rows = [[tag("code", sym.name), sym.section, tag("span", Path(sym.path).name, title=sym.path),
                 f"{sym.size:,} B", sym.pages, f"{units.sig(avg(sym.weighted_page_samples) / 1e6)} MB/s",
                 units.probability(sym.max_p)]
                for sym in a.symbols[:SYMBOLS_SHOWN]]
    skipped = "; ".join(f"{Path(p).name}: {why}" for p, why in list(a.elf_skipped.items())[:3])
    symbols = table([Column("symbol"), Column("section"), Column("object"), Column("size", True),
                     Column("pages", True), Column("dirty rate", True), Column("max p", True)],
                    sym_rows or [["no dirtied page lies in an ELF data symbol", "", "", "", "", "", ""]],
                    caption="Hottest ELF data symbols (.data, .bss): dirty rate counts each page by the "
                            "share of its bytes the symbol covers")
    region_text = (f"The busiest region is {a.region_stats[0].label} ({a.region_stats[0].kind})."
                   if a.region_stats else "No page was dirtied.")
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


def _replay(a, results: dict, source: str) -> Raw:
    images = replay_images(results)
    workload = results.get("workload", {})
    notes = []
    if workload.get("kind") == "trace" and Path(str(workload.get("path", ""))).name != Path(a.trace_path).name:
        notes.append(tag("div", f"Note: these replay results were computed from {workload.get('path')}, "
                                f"not from {Path(a.trace_path).name}.", class_="note"))
    elif workload.get("kind") == "uniform":
        notes.append(tag("div", f"Note: these replay results are of a synthetic uniform workload "
                                f"(p = {workload.get('p')}), not of this trace.", class_="note"))
    if workload.get("skipped_samples"):
        notes.append(tag("div", f"The replay left out the trace's first {workload['skipped_samples']:,} samples "
                                f"({float(workload.get('skipped_seconds', 0)):.3g} s, with --skip), the service's "
                                "start-up, and looped the rest.", class_="note"))
    rows, classes = [], []
    page_size = int(results["page_size"])
    for sc in results["scenarios"]:
        best = best_algorithms(sc)
        n = len(sc["results"])
        for i, r in enumerate(sc["results"]):
            alg = tag("span", join([r["algorithm"], tag("span", "lowest", class_="badge")
                                    if r["algorithm"] in best else ""]), class_="nowrap")
            stop = ("forced by the time limit: " if r["forced"] else "") + str(r["stop_reason"])
            group = [Cell(units.format_size(sc["ram_bytes"], " "), n, "group"),
                     Cell(units.format_rate(sc["bandwidth_bps"], " ") + "/s", n, "group")] if i == 0 else [None, None]
            rows.append([*group, alg, units.seconds(r["cost"]), units.seconds(r["total_time"]),
                         units.seconds(r["precopy_time"]), units.seconds(r["downtime"]),
                         units.mib(r["pages_sent"] * page_size), f"{r['rounds']:,}",
                         tag("span", stop, class_="stop")])
            classes.append("best" if r["algorithm"] in best else "")
    results_table = table(
        [Column("RAM"), Column("bandwidth"), Column("algorithm"), Column("cost", True),
         Column("total time", True), Column("pre-copy", True), Column("downtime", True),
         Column("data sent", True), Column("rounds", True), Column("why it stopped")],
        rows, row_classes=classes,
        caption="Simulated live migrations of this workload; cost = seconds of violated SLA "
                "(lower is better), the lowest of each scenario highlighted")
    cost = results.get("cost", {})
    step = float(results["step_seconds"])
    lead = (f"Pre-copy live migration simulated in-band: each step of {step:.3g} s (one trace sample) "
            "the migration takes b(t) of the link and the service keeps the rest; the cost grows by "
            f"F(B − b(t)), the probability that a request misses its SLA ({cost.get('spec', 'see results.json')}), "
            "and by 1 per second of downtime. The trace's pages are laid onto the RAM of each scenario; "
            "pages it never wrote are copied once.")
    figs = [figure(images["cost_bars"], "Cost per algorithm and scenario", [
                "The SLA cost of each algorithm in each scenario, on a log scale: one step up the axis "
                "is ten times the violation.", _winners(results),
                "CALM trades a longer, gentler pre-copy for a short stop-and-copy; Xen and QEMU send at "
                "full speed and starve the service while they do."], alt="grouped bar chart of costs",
                fig_id="fig-cost"),
            figure(images["bandwidth"], "Bandwidth over time", [
                "The migration's share of the link in each scenario (log time axis: runs last from "
                "seconds to minutes). The dot marks where the pre-copy ends and the service stops for "
                "the final copy. CALM picks each step's rate from the cost function and the dirtying it "
                "has seen so far; the others follow fixed rules."],
                alt="migration bandwidth over time per scenario", wide=True, fig_id="fig-bandwidth")]
    if "sweep" in images:
        figs.append(figure(images["sweep"], "Cost against a fixed bandwidth", [
            "Each point is a migration at one fixed bandwidth, stopped at its best moment, simulated on "
            "the trace; the dashed curve is the uniform model at the trace's mean p. The green line is "
            "CALM's cost: it needs no bandwidth chosen in advance."],
            alt="cost of fixed-bandwidth migrations against bandwidth", wide=True, fig_id="fig-sweep"))
    src = [tag("p", join(["Source: ", tag("code", source)]), class_="muted")] if source else []
    return section("replay", "Migration replay", lead, [*notes, results_table, *figs, *src])


def _winners(results: dict) -> str:
    """'Lowest cost: calm in 1GiB@1Gbit and 512MiB@512Mbit; fixed in 256MiB@256Mbit.'"""
    by_alg: dict[str, list[str]] = {}
    for sc in results["scenarios"]:
        for alg in sorted(best_algorithms(sc)):
            by_alg.setdefault(alg, []).append(sc["name"])
    parts = [f"{alg} in {', '.join(names[:-1]) + ' and ' + names[-1] if len(names) > 1 else names[0]}"
             for alg, names in sorted(by_alg.items(), key=lambda kv: -len(kv[1]))]
    return "Lowest cost: " + "; ".join(parts) + "." if parts else ""


def _short_paths(label: str) -> str:
    """'anonymous (.bss of /usr/lib/x/libz.so)' -> 'anonymous (.bss of libz.so)'."""
    return re.sub(r"/(?:[^/\s()]+/)+", "", label)


def _no_replay(a) -> Raw:
    name = Path(a.trace_path).name
    return section("replay", "Migration replay", "This report was built without replay results.", [
        tag("p", join(["Run ", tag("code", f"calm replay {name} -o replay"), " and then ",
                       tag("code", f"calm report {name} --replay replay/results.json -o report.html"),
                       " to add the comparison of CALM, Clark, Xen and QEMU."]))])


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


