"""`calm report`: what the HTML holds for a hand-made trace with known numbers, and bad input."""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from analyzer_helpers import handcrafted_trace
from collector_helpers import calm, one_line_error

from calm.core.units import sig


class Tables(HTMLParser):
    """Collects every table as (caption, rows of cell texts, row classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self._cell: list[str] | None = None
        self._caption = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"caption": "", "rows": [], "classes": []})
        elif tag == "caption":
            self._caption = True
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
            self.tables[-1]["classes"].append(dict(attrs).get("class") or "")
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "caption":
            self._caption = False
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1]["rows"][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._caption:
            self.tables[-1]["caption"] += data
        elif self._cell is not None:
            self._cell.append(data)

    def find(self, caption_start: str) -> dict:
        return next(t for t in self.tables if t["caption"].startswith(caption_start))


def parse(path: Path) -> tuple[str, Tables]:
    html = path.read_text()
    tables = Tables()
    tables.feed(html)
    return html, tables


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("report-cli")
    trace = handcrafted_trace(tmp / "t.h5")
    replay = tmp / "replay"
    calm("replay", str(trace), "-s", "1MiB@8Mbit", "-s", "2MiB@16Mbit", "-q", "--no-plots", "-o",
         str(replay), check=True)
    uniform = tmp / "uniform"
    calm("replay", "--uniform", "0.01", "-s", "1MiB@8Mbit", "-a", "calm,xen", "-q", "--no-plots",
         "-o", str(uniform), check=True)
    return {"tmp": tmp, "trace": trace, "results": replay / "results.json",
            "uniform": uniform / "results.json"}


def test_report_holds_the_trace_metadata_and_exact_figures(made, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = calm("report", str(made["trace"]), "--replay", str(made["results"]), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"calm report: wrote {out} (" in result.stderr
    html, tables = parse(out)
    assert "<title>calm report: t.h5</title>" in html
    meta = dict(tables.tables[0]["rows"])
    assert meta["recording ended"] == "test (status: complete)"
    assert meta["samples"] == "10 samples over 5.0 s" and meta["interval"].startswith("0.5 s requested")
    assert meta["baseline read"].startswith("0.00 s from the start until the first sample")
    procs = tables.find("Processes followed")["rows"][1:]
    # pid 11 has segments in samples 0-3; exit_sample 4 is the first sample without it
    assert [(r[0], r[1], r[4], r[5]) for r in procs] == [("10", "1", "0–9", "no"),
                                                         ("11", "10", "0–3", "yes, after sample 3")]
    top = tables.find("The 10 most often dirtied pages")["rows"][1:]
    # ranks as in test_analyzer_exact: (10,100) p=1, (11,100), (11,101), (10,500), (10,101) p=0.5 ...
    assert [(r[1], r[2], r[3], r[4]) for r in top[:5]] == [
        ("10", "0x64000", "1.000", "1.000"), ("11", "0x64000", "1.000", "1.000"),
        ("11", "0x65000", "1.000", "1.000"), ("10", "0x1f4000", "1.000", "1.000"),
        ("10", "0x65000", "0.500", "0.750")]  # 0.5 per 0.5 s sample = 0.75 per second
    assert top[0][5] == "10 / 10" and top[3][6] == "(no recorded region)"
    assert "The busiest region is the heap." in html  # not "[heap] (heap)"
    assert len(top) == 7


def test_replay_table_matches_results_json(made, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    calm("report", str(made["trace"]), "--replay", str(made["results"].parent), "-o", str(out), "-q",
         check=True)  # a replay directory works as well as its results.json
    results = json.loads(made["results"].read_text())
    _, tables = parse(out)
    table = tables.find("Simulated live migrations")
    rows, classes = table["rows"][1:], table["classes"][1:]
    expected = [(r["algorithm"], f"{sig(r['cost'])} s") for s in results["scenarios"] for r in s["results"]]
    got = [(algorithm_of(row[-8]), row[-7]) for row in rows]
    assert got == expected
    for i, scenario in enumerate(results["scenarios"]):
        costs = [r["cost"] for r in scenario["results"]]
        n = len(costs)
        assert [cls == "best" for cls in classes[i * n:(i + 1) * n]] == tie_rule(costs, scenario["bandwidth_bps"])
        fixed = next(row for row in rows[i * n:(i + 1) * n] if row[-8].startswith("fixed"))
        assert "plan:" in fixed[-8] and "per-page write probabilities" in fixed[-8]  # a trace: its profile
    assert rows[0][:2] == ["1 MiB", "8 Mbit/s"]


def algorithm_of(cell: str) -> str:
    """The algorithm's name in its cell, without the badge or the fixed row's plan."""
    return re.split(r"tied lowest|lowest|plan:", cell)[0].strip()


def tie_rule(costs: list[float], bandwidth_bps: float, page_size: int = 4096) -> list[bool]:
    """The rule the report states (written out here, not imported): a cost ties for the lowest
    when it exceeds it by at most 1 % of it or one page's downtime at the scenario's bandwidth."""
    low = min(costs)
    return [c - low <= max(0.01 * low, page_size * 8 / bandwidth_bps) for c in costs]


def test_lowest_badges_follow_the_tie_rule(made, tmp_path: Path) -> None:
    """Costs that differ by nothing a user could act on are ties: every tied algorithm gets the
    badge, and the overview card and the text under the cost figure say the same."""
    results = json.loads(made["results"].read_text())
    scenario = results["scenarios"][0]  # 1MiB@8Mbit: one page's downtime is 4.1 ms
    costs = {"calm": 9.58e-30, "clark": 8.62e-15, "xen": 0.2, "qemu": 0.00203, "fixed": 0.00206}
    for r in scenario["results"]:
        r["cost"] = costs[r["algorithm"]]
    results["scenarios"] = [scenario]
    edited = tmp_path / "results.json"
    edited.write_text(json.dumps(results))
    out = tmp_path / "r.html"
    calm("report", str(made["trace"]), "--replay", str(edited), "-o", str(out), "-q", check=True)
    html, tables = parse(out)
    rows = tables.find("Simulated live migrations")["rows"][1:]
    badged = {algorithm_of(row[-8]): "tied lowest" in row[-8] for row in rows if "lowest" in row[-8]}
    assert badged == {"calm": True, "clark": True, "qemu": True, "fixed": True}  # all within 4.1 ms of 0
    assert tie_rule(list(costs.values()), scenario["bandwidth_bps"]) == [True, True, False, True, True]
    text = unescape(html)
    assert "CALM and Clark and QEMU and Fixed (tied) in 1MiB@8Mbit" in text
    assert "lowest in 1 of 1 scenarios each; 1 scenario tied" in text


def test_report_without_replay_says_how_to_add_it(made, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    calm("report", str(made["trace"]), "-o", str(out), "-q", check=True)
    html, tables = parse(out)
    assert "built without replay results" in html and "calm replay t.h5" in html
    assert not any(t["caption"].startswith("Simulated live migrations") for t in tables.tables)
    assert html.count('<img src="data:image/png;base64,') == 9


def test_results_of_another_workload_are_flagged(made, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = calm("report", str(made["trace"]), "--replay", str(made["uniform"]), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "warning: " in result.stderr and "synthetic uniform workload (p = 0.01), not of t.h5" in result.stderr
    assert "synthetic uniform workload (p = 0.01), not of t.h5" in out.read_text()
    # the same recording under another name is the same recording
    renamed = tmp_path / "renamed.h5"
    renamed.write_bytes(made["trace"].read_bytes())
    result = calm("report", str(renamed), "--replay", str(made["results"]), "-o", str(out), "--force")
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


def test_results_of_another_recording_are_refused(made, tmp_path: Path) -> None:
    import h5py

    other = tmp_path / "other.h5"
    other.write_bytes(made["trace"].read_bytes())
    with h5py.File(other, "r+") as f:  # another recording: it started at another time
        f.attrs["start_time_unix"] = 3600.0
        f.attrs["start_time"] = "2026-01-01T01:00:00Z"
    out = tmp_path / "r.html"
    line = one_line_error(calm("report", str(other), "--replay", str(made["results"]), "-o", str(out)))
    assert ": computed from" in line and "not from other.h5" in line and "2026-01-01T01:00:00Z" in line
    assert not out.exists()
    # results.json of an older calm do not name their recording: the sample count still tells
    results = json.loads(made["results"].read_text())
    del results["workload"]["recording"]
    results["workload"]["n_steps"] += 1
    old = tmp_path / "old.json"
    old.write_text(json.dumps(results))
    line = one_line_error(calm("report", str(made["trace"]), "--replay", str(old), "-o", str(out)))
    assert "(11 samples), not from t.h5 (10 samples)" in line
    results["workload"]["n_steps"] -= 1
    results["workload"]["path"] = "elsewhere/x.h5"
    old.write_text(json.dumps(results))
    result = calm("report", str(made["trace"]), "--replay", str(old), "-o", str(out))
    assert result.returncode == 0 and "warning: " in result.stderr and "may not be t.h5" in result.stderr


def test_a_replay_that_skipped_the_start_says_so(made, tmp_path: Path) -> None:
    replay = tmp_path / "replay"
    calm("replay", str(made["trace"]), "-s", "1MiB@8Mbit", "-a", "fixed", "--skip", "1s", "-q",
         "--no-plots", "-o", str(replay), check=True)
    out = tmp_path / "r.html"
    calm("report", str(made["trace"]), "--replay", str(replay), "-o", str(out), "-q", check=True)
    assert "left out the trace's first 2 samples (1 s, with --skip)" in unescape(out.read_text())
    calm("report", str(made["trace"]), "--replay", str(made["results"]), "-o", str(out), "-q", "--force",
         check=True)
    assert "left out the trace" not in out.read_text()


def test_existing_output_needs_force(made, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    out.write_text("keep")
    assert "exists; use --force" in one_line_error(calm("report", str(made["trace"]), "-o", str(out)))
    assert out.read_text() == "keep"
    calm("report", str(made["trace"]), "-o", str(out), "--force", "-q", check=True)
    assert out.read_text().startswith("<!DOCTYPE html>")


def _bad_inputs(made, tmp: Path) -> list[tuple[list[str], str]]:
    not_json = tmp / "bad.json"
    not_json.write_text('{"tool": ')
    foreign = tmp / "foreign.json"
    foreign.write_text('{"tool": "something else"}')
    text = tmp / "notes.txt"
    text.write_text("hello")
    trace = str(made["trace"])
    return [
        (["report", str(tmp / "missing.h5"), "-o", str(tmp / "o.html")], "does not exist"),
        (["report", str(text), "-o", str(tmp / "o.html")], "not an HDF5 file"),
        (["report", trace, "--replay", str(tmp / "none.json"), "-o", str(tmp / "o.html")], "not found"),
        (["report", trace, "--replay", str(not_json), "-o", str(tmp / "o.html")], "is not JSON"),
        (["report", trace, "--replay", str(foreign), "-o", str(tmp / "o.html")], "not a results.json"),
        (["report", trace, "-o", str(tmp / "no-dir" / "o.html")], "does not exist"),
        (["report", trace, "-o", str(tmp)], "is a directory"),
        (["report", trace, "--migrate", str(tmp / "none"), "-o", str(tmp / "o.html")], "not found"),
        (["report", trace, "--migrate", str(foreign), "-o", str(tmp / "o.html")], "not a migrate.json"),
        (["report", trace, "--migrate", str(not_json), "-o", str(tmp / "o.html")], "is not JSON"),
    ]


def test_bad_input_is_one_line_and_writes_nothing(made, tmp_path: Path) -> None:
    for args, message in _bad_inputs(made, tmp_path):
        line = one_line_error(calm(*args))
        assert message in line, (args, line)
        assert not (tmp_path / "o.html").exists()


def test_report_says_what_a_charged_replay_charged(made, tmp_path: Path) -> None:
    replay = tmp_path / "extra"
    calm("replay", str(made["trace"]), "-s", "1MiB@8Mbit", "-a", "calm,xen", "--charge", "extra",
         "--price-per-second", "0.01", "-q", "--no-plots", "-o", str(replay), check=True)
    charged, plain = tmp_path / "charged.html", tmp_path / "plain.html"
    calm("report", str(made["trace"]), "--replay", str(replay), "-o", str(charged), "-q", check=True)
    calm("report", str(made["trace"]), "--replay", str(made["results"]), "-o", str(plain), "-q", check=True)
    text = charged.read_text()
    assert "(--charge extra)" in text and "also costs 0.01 s (--price-per-second)" in text
    assert "--charge" not in plain.read_text()  # the slides' charge needs no word
