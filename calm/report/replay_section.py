"""The report's migration replay: the table, its "lowest" badges and the replay's own figures.

Why its own module: the replay part reads only results.json (replay/outputs.py), and every claim
it makes about which algorithm is cheapest goes through one rule (`calm.replay.compare`), so the
badges, the overview card and the text under the figures never disagree. Two rows of the table
are easy to misread and are labelled for what they are: `fixed` is the bandwidth planned in
advance (from the trace's per-page write probabilities, or the uniform model), and the sweep's
cheapest point is an oracle (bandwidth and stop
chosen knowing the whole trace), shown as a row of its own that never competes for "lowest".
"""

from __future__ import annotations

from pathlib import Path

from calm.core import units
from calm.replay.compare import TIE_RULE, lowest_cost
from calm.report.figures import replay_images
from calm.report.html import Cell, Column, Raw, card, figure, join, section, table, tag
from calm.report.replay_results import recording_mismatch
from calm.trace.reader import recording_identity

DISPLAY_NAMES = {"calm": "CALM", "clark": "Clark", "xen": "Xen", "qemu": "QEMU", "fixed": "Fixed"}


def display(algorithm: str) -> str:
    return DISPLAY_NAMES.get(algorithm, algorithm)


def lowest_by_scenario(results: dict) -> list[set[str]]:
    """For each scenario, the algorithms that tie for its lowest cost (calm.replay.compare)."""
    page_size = int(results["page_size"])
    return [lowest_cost(sc, page_size) for sc in results["scenarios"]]


def overview_card(results: dict) -> Raw | None:
    """'Lowest migration cost: CALM, in 3 of 4 scenarios' (ties count for every tied algorithm)."""
    lowest = lowest_by_scenario(results)
    wins: dict[str, int] = {}
    for best in lowest:
        for alg in best:
            wins[alg] = wins.get(alg, 0) + 1
    if not wins:
        return None
    most = max(wins.values())
    leaders = sorted((a for a, n in wins.items() if n == most), key=_table_order(results))
    tied = sum(1 for best in lowest if len(best) > 1)
    sub = (f"lowest in {most} of {len(lowest)} scenarios" + (" each" if len(leaders) > 1 else "")
           + (f"; {tied} scenario{'s' if tied > 1 else ''} tied" if tied else ""))
    return card("Lowest migration cost", " and ".join(display(a) for a in leaders), sub, good=True)


def _table_order(results: dict):
    order = [r["algorithm"] for sc in results["scenarios"] for r in sc["results"]]
    return lambda a: order.index(a) if a in order else len(order)


def winners_text(results: dict, with_rule: bool = True) -> str:
    """'Lowest cost (RULE): CALM in 1GiB@1Gbit and 512MiB@512Mbit; CALM and Clark (tied) in ...'."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for sc, best in zip(results["scenarios"], lowest_by_scenario(results)):
        if best:
            groups.setdefault(tuple(sorted(best, key=_table_order(results))), []).append(sc["name"])
    if not groups:
        return ""
    parts = []
    for algs, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        who = " and ".join(display(a) for a in algs) + (" (tied)" if len(algs) > 1 else "")
        where = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        parts.append(f"{who} in {where}")
    return f"Lowest cost{f' ({TIE_RULE})' if with_rule else ''}: " + "; ".join(parts) + "."


def charge_text(cost: dict) -> str:
    """What the cost charged, when the replay was not run with the slides' absolute charge."""
    mode, price = cost.get("charge", "absolute"), float(cost.get("price_per_s") or 0.0)
    parts = []
    if mode == "extra":
        parts.append("only the violations the migration adds are charged (--charge extra): F(B − b(t)) − F(B) "
                     "while pre-copying and 1 − F(B) per second of downtime")
    if price:
        parts.append(f"every second of migration also costs {price:g} s (--price-per-second)")
    return (" In this replay " + "; ".join(parts) + ".") if parts else ""


def fixed_plan(result: dict, results: dict) -> str:
    """What the `fixed` row is: a bandwidth planned before the migration, not the best one."""
    options = result.get("options") or {}
    rate = options.get("bandwidth_pages_per_step")
    speed = (f" {units.mbit_s(rate * results['page_size'] * 8 / results['step_seconds'])}"
             if isinstance(rate, (int, float)) else "")
    if options.get("planned_from") == "per-page profile":
        return f"plan:{speed} from the trace's per-page write probabilities"
    if "planned_p" in options:
        return (f"plan:{speed} from the uniform model at the trace's mean p = "
                f"{float(options['planned_p']):.3g} per step")
    return f"plan:{speed} chosen before the migration"


def oracle(scenario: dict) -> tuple[float, float] | None:
    """(cost, bandwidth in bit/s) of the sweep's cheapest point, or None without a sweep."""
    sweep = scenario.get("sweep")
    if not sweep:
        return None
    points = [(c, b) for c, b in zip(sweep["simulated_cost"], sweep["bandwidth_bps"]) if c is not None]
    return min(points) if points else None


def _rows(results: dict):
    rows, classes, attrs = [], [], []
    page_size = int(results["page_size"])
    for sc, best in zip(results["scenarios"], lowest_by_scenario(results)):
        best_point = oracle(sc)
        n = len(sc["results"]) + (1 if best_point else 0)
        badge = "tied lowest" if len(best) > 1 else "lowest"
        if sc.get("skipped"):  # too small for the service: said in the table, nothing simulated
            rows.append([*_group(sc, 1, 0), "—", "", "", "", "", "", "", tag("span", sc["skipped"], class_="stop")])
            classes.append("")
            attrs.append({"data_scenario": sc["name"], "data_algorithm": "-"})
            continue
        for i, r in enumerate(sc["results"]):
            name = [r["algorithm"]]
            if r["algorithm"] in best:
                name.append(tag("span", badge, class_="badge", title=TIE_RULE))
            cell = [tag("span", join(name), class_="nowrap")]
            if r["algorithm"] == "fixed":
                cell.append(tag("div", fixed_plan(r, results), class_="stop"))
            stop = ("forced by the time limit: " if r["forced"] else "") + str(r["stop_reason"])
            rows.append([*_group(sc, n, i), join(cell), units.seconds(r["cost"]), units.seconds(r["total_time"]),
                         units.seconds(r["precopy_time"]), units.seconds(r["downtime"]),
                         units.mib(r["pages_sent"] * page_size), f"{r['rounds']:,}",
                         tag("span", stop, class_="stop")])
            classes.append("best" if r["algorithm"] in best else "")
            attrs.append({"data_scenario": sc["name"], "data_algorithm": r["algorithm"],
                          "data_cost": "" if r["cost"] is None else repr(float(r["cost"])),
                          "data_lowest": "1" if r["algorithm"] in best else "0"})
        if best_point:
            cost, bw = best_point
            points = len(sc["sweep"]["bandwidth_bps"])
            rows.append([*_group(sc, n, n - 1), join([tag("span", "oracle", class_="nowrap"), tag(
                "div", f"not a policy: best of {points} swept bandwidths, in hindsight", class_="stop")]),
                units.seconds(cost), "–", "–", "–", "–", "–",
                tag("span", f"the cheapest of {points} fixed bandwidths swept ({units.mbit_s(bw)}), stopped at "
                            "its best moment: both chosen knowing the whole trace", class_="stop")])
            classes.append("oracle")
            attrs.append({"data_scenario": sc["name"], "data_algorithm": "oracle"})
    return rows, classes, attrs


def _group(sc: dict, n: int, i: int) -> list:
    if i:
        return [None, None]
    ram = units.format_size(sc["ram_bytes"], " ") + (" (the service's)" if sc.get("origin") == "service" else "")
    return [Cell(ram, n, "group"),
            Cell(units.format_rate(sc["bandwidth_bps"], " ") + "/s", n, "group")]


def _notes(a, results: dict) -> list[Raw]:
    workload = results.get("workload", {})
    notes = []
    level, why = recording_mismatch(results, recording_identity(a.info, a.n_samples),
                                    Path(a.trace_path).name, "the replay results")
    if level:
        notes.append(tag("div", f"Note: {why}.", class_="note"))
    if workload.get("skipped_samples"):
        notes.append(tag("div", f"The replay left out the trace's first {workload['skipped_samples']:,} samples "
                                f"({float(workload.get('skipped_seconds', 0)):.3g} s, with --skip), the service's "
                                "start-up, and looped the rest.", class_="note"))
    notes += [tag("div", f"Note: {n}", class_="note") for n in results.get("notes", [])]
    return notes


def replay_section(a, results: dict, source: str) -> Raw:
    images = replay_images(results)
    rows, classes, attrs = _rows(results)
    results_table = table(
        [Column("RAM"), Column("bandwidth"), Column("algorithm"), Column("cost", True),
         Column("total time", True), Column("pre-copy", True), Column("downtime", True),
         Column("data sent", True), Column("rounds", True), Column("why it stopped")],
        rows, row_classes=classes, row_attrs=attrs,
        caption="Simulated live migrations of this workload; cost = seconds of violated SLA "
                f"(lower is better); the lowest of each scenario is highlighted, and {TIE_RULE}")
    cost = results.get("cost", {})
    step = float(results["step_seconds"])
    lead = (f"Pre-copy live migration simulated in-band: each step of {step:.3g} s (one trace sample) "
            "the migration takes b(t) of the link and the service keeps the rest; the cost grows by "
            f"F(B − b(t)), the probability that a request misses its SLA ({cost.get('spec', 'see results.json')}), "
            "and by 1 per second of downtime. The trace's pages are laid onto the RAM of each scenario; "
            "pages it never wrote are copied once." + charge_text(cost))
    figs = [figure(images["cost_bars"], "Cost per algorithm and scenario", [
                "The SLA cost of each algorithm in each scenario, on a log scale: one step up the axis "
                "is ten times the violation.", winners_text(results),
                "Xen and QEMU send at full speed and leave the service nothing while they do; the "
                "others trade a longer, gentler pre-copy for a short stop-and-copy."],
                alt="grouped bar chart of costs", fig_id="fig-cost"),
            figure(images["bandwidth"], "Bandwidth over time", [
                "The migration's share of the link, one row per scenario and one panel per algorithm "
                "(log time axis: runs last from seconds to minutes; dashed: the whole link). The dot "
                "marks where the pre-copy ends and the service stops for the final copy. CALM picks "
                "each step's rate from the cost function and the dirtying it has seen so far; the "
                "others follow fixed rules."],
                alt="migration bandwidth over time per scenario and algorithm", wide=True,
                fig_id="fig-bandwidth")]
    if "sweep" in images:
        figs.append(figure(images["sweep"], "Cost against a fixed bandwidth", [
            "Each blue point is a migration at one fixed bandwidth, simulated on the trace and stopped "
            "at its best moment in hindsight; the cheapest of them (star) is the oracle row of the "
            "table, which no real migration can know in advance. The diamond is the table's fixed "
            "row: the bandwidth the uniform model plans at the trace's mean p, and what it cost on the "
            "trace. The dashed curve is that uniform model itself (▼ where it falls below the axis); "
            "the green line is CALM's cost, which needs no bandwidth chosen in advance."],
            alt="cost of fixed-bandwidth migrations against bandwidth", wide=True, fig_id="fig-sweep"))
    src = [tag("p", join(["Source: ", tag("code", source)]), class_="muted")] if source else []
    return section("replay", "Migration replay", lead, [*_notes(a, results), results_table, *figs, *src])


def no_replay_section(a) -> Raw:
    name = Path(a.trace_path).name
    return section("replay", "Migration replay", "This report was built without replay results.", [
        tag("p", join(["Run ", tag("code", f"calm replay {name} -o replay"), " and then ",
                       tag("code", f"calm report {name} --replay replay/results.json -o report.html"),
                       " to add the comparison of CALM, Clark, Xen and QEMU."]))])
