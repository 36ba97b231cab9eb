"""ELF attribution end to end: a real C program, recorded by the real collector, analysed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from calm.analyzer import analyze
from tests.collector_helpers import calm

SOURCE = Path(__file__).parent / "data" / "hot_global.c"


@pytest.fixture(scope="module", params=["-pie", "-no-pie"])
def recorded(tmp_path_factory, request):
    """The program built as PIE (load bias = base address) and not (bias 0), then recorded."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed for the ELF attribution test (apt-get install gcc)")
    tmp = tmp_path_factory.mktemp("elf")
    prog = tmp / "hot_global"
    subprocess.run(["gcc", "-O1", "-g", request.param, "-o", str(prog), str(SOURCE)], check=True)
    trace = tmp / "t.h5"
    calm("record", "--backend", "hash", "--interval", "0.2", "--duration", "3", "-q",
         "-o", str(trace), "--", str(prog), "30", check=True)
    return prog, trace


def test_hottest_symbol_is_the_array_the_program_writes(recorded):
    prog, trace = recorded
    a = analyze(trace)
    assert a.symbols, a.elf_skipped
    top = a.symbols[0]
    assert (top.path, top.name, top.section) == (str(prog), "hot_bss_array", ".bss")
    # 16 pages written every 10 ms: every page dirty in (nearly) every 0.2 s sample
    assert top.pages >= 16 and top.max_p > 0.9
    second = a.symbols[1]
    assert (second.name, second.section) == ("hot_data_array", ".data")
    assert second.weighted_page_samples > 3.5 * a.n_samples * 0.9
    # never written after start: at most the shared edge page, weighted by its tiny byte share
    cold = [s for s in a.symbols if s.name == "cold_data_array"]
    assert not cold or cold[0].weighted_page_samples < 1.0 * a.n_samples
    sections = {(s.path, s.name): s for s in a.sections}
    assert sections[(str(prog), ".bss")].pages >= 15
    # the .bss tail beyond the file is an anonymous region credited to the program
    labels = {r.label for r in a.region_stats}
    assert f"anonymous (.bss of {prog})" in labels


def test_cli_names_the_symbol(recorded, tmp_path):
    prog, trace = recorded
    result = calm("analyze", str(trace), "-o", str(tmp_path / "out"), "--no-plots", check=True)
    first_symbol = next(line for line in result.stdout.splitlines() if "symbol " in line)
    assert f"symbol hot_bss_array (.bss of {prog})" in first_symbol
    rows = (tmp_path / "out" / "symbols.csv").read_text().splitlines()
    assert rows[1].startswith(f"{prog},hot_bss_array,.bss,")
