"""`calm report`: what the HTML holds for a hand-made trace with known numbers, and bad input."""

from __future__ import annotations

import json
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
    assert meta["samples"] == "10 over 5.00 s" and meta["interval"].startswith("0.5 s requested")
    procs = tables.find("Processes followed")["rows"][1:]
    assert [(r[0], r[1], r[5]) for r in procs] == [("10", "1", "no"), ("11", "10", "yes, at sample 4")]
    top = tables.find("The 10 most often dirtied pages")["rows"][1:]
    # ranks as in test_analyzer_exact: (10,100) p=1, (11,100), (11,101), (10,500), (10,101) p=0.5 ...
    assert [(r[1], r[2], r[3], r[4]) for r in top[:5]] == [
        ("10", "0x64000", "1.000", "1.000"), ("11", "0x64000", "1.000", "1.000"),
        ("11", "0x65000", "1.000", "1.000"), ("10", "0x1f4000", "1.000", "1.000"),
        ("10", "0x65000", "0.500", "0.750")]  # 0.5 per 0.5 s sample = 0.75 per second
    assert top[0][5] == "10 / 10" and top[3][6] == "(no recorded region)"
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
    got = [(row[-8].replace("lowest", "").strip(), row[-7]) for row in rows]
    assert got == expected
    for i, scenario in enumerate(results["scenarios"]):
        costs = [r["cost"] for r in scenario["results"]]
        n = len(costs)
        best = [c == min(costs) for c in costs]
        assert [cls == "best" for cls in classes[i * n:(i + 1) * n]] == best
    assert rows[0][:2] == ["1 MiB", "8 Mbit/s"]


def test_report_without_replay_says_how_to_add_it(made, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    calm("report", str(made["trace"]), "-o", str(out), "-q", check=True)
    html, tables = parse(out)
    assert "built without replay results" in html and "calm replay t.h5" in html
    assert not any(t["caption"].startswith("Simulated live migrations") for t in tables.tables)
    assert html.count('<img src="data:image/png;base64,') == 9


def test_results_of_another_workload_are_flagged(made, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    calm("report", str(made["trace"]), "--replay", str(made["uniform"]), "-o", str(out), "-q", check=True)
    assert "synthetic uniform workload (p = 0.01), not of this trace" in out.read_text()
    other = made["tmp"] / "other.h5"
    other.write_bytes(made["trace"].read_bytes())
    calm("report", str(other), "--replay", str(made["results"]), "-o", str(out), "-q", "--force", check=True)
    assert "computed from" in out.read_text() and "not from other.h5" in out.read_text()


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
    ]


def test_bad_input_is_one_line_and_writes_nothing(made, tmp_path: Path) -> None:
    for args, message in _bad_inputs(made, tmp_path):
        line = one_line_error(calm(*args))
        assert message in line, (args, line)
        assert not (tmp_path / "o.html").exists()
