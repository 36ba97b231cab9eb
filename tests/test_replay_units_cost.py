"""Units parsing and the cost functions F (M/M/1 and measured CSV tables)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calm.core.errors import CalmError
from calm.replay.cost import MM1Cost, in_pages, load_cost_csv, parse_cost, table_cost
from calm.replay.scenario import SLIDE_SCENARIOS, parse_scenario, rate_to_pages
from calm.core.units import format_rate, format_size, parse_duration, parse_rate, parse_size


@pytest.mark.parametrize("text,value", [("1GiB", 2**30), ("512MiB", 2**29), ("4KiB", 4096), ("4096", 4096),
                                        ("4096B", 4096), ("1.5KiB", 1536), ("2TiB", 2 * 2**40)])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text,value", [("1Gbit", 1e9), ("512Mbit", 512e6), ("256Mbit/s", 256e6),
                                        ("100Mbps", 100e6), ("10kbit", 1e4), ("64MiB/s", 64 * 2**20 * 8)])
def test_rates(text, value):
    assert parse_rate(text) == pytest.approx(value)


@pytest.mark.parametrize("text,value", [("300ms", 0.3), ("1s", 1.0), ("0.5", 0.5), ("2min", 120.0)])
def test_durations(text, value):
    assert parse_duration(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["1GB", "1G", "512M", "1Gb", "1gb"])
def test_ambiguous_sizes_refused(text):
    with pytest.raises(CalmError, match="ambiguous"):
        parse_size(text)


@pytest.mark.parametrize("text", ["1G", "1Gb", "1GB/s", "512M", "1Gb/s"])
def test_ambiguous_rates_refused(text):
    with pytest.raises(CalmError, match="ambiguous"):
        parse_rate(text)


@pytest.mark.parametrize("parse,text", [(parse_size, "0"), (parse_size, "-1GiB"), (parse_rate, "0Mbit"),
                                        (parse_rate, "-5Mbit"), (parse_duration, "-1s"), (parse_duration, "0")])
def test_zero_and_negative_refused(parse, text):
    with pytest.raises(CalmError, match="must be positive"):
        parse(text)


def test_formatting_round_trips():
    for size in (2**30, 2**29, 3 * 2**28):
        assert parse_size(format_size(size)) == size
    for rate in (1e9, 256e6, 1.5e9):
        assert parse_rate(format_rate(rate)) == pytest.approx(rate)


def test_scenarios_and_page_units():
    s = parse_scenario("1GiB@1Gbit")
    assert (s.ram_bytes, s.bandwidth_bps, s.name) == (2**30, 1e9, "1GiB@1Gbit")
    assert s.n_pages(4096) == 262144
    # 1 Gbit/s of 4 KiB pages, 0.1 s steps: 1e9 / 8 / 4096 * 0.1 pages
    assert s.pages_per_step(4096, 0.1) == pytest.approx(3051.7578125)
    assert rate_to_pages(256e6, 4096, 1.0) == pytest.approx(7812.5)
    assert [parse_scenario(t).name for t in SLIDE_SCENARIOS] == list(SLIDE_SCENARIOS)
    for bad in ("1GiB", "@1Gbit", "1GiB@", "1GB@1Gbit", "1GiB@1G"):
        with pytest.raises(CalmError):
            parse_scenario(bad)


def test_mm1_closed_form():
    f = MM1Cost(rate=10.0, size_bytes=2**20, sla_s=1.0)
    bs = np.array([0.0, 50e6, 100e6, 200e6, 1e9])
    mu = bs / 8 / 2**20
    expected = np.where(mu > 10, np.exp(-(mu - 10)), 1.0)
    assert np.allclose(f(bs), expected)
    grid = np.linspace(0, 1e9, 1001)
    values = f(grid)
    assert values[0] == 1.0 and np.all(np.diff(values) <= 0) and np.all((values >= 0) & (values <= 1))


def test_mm1_spec_and_pages_adapter():
    f = parse_cost("mm1:rate=12,size=1MiB,sla=500ms")
    assert (f.rate, f.size_bytes, f.sla_s) == (12.0, 2**20, 0.5)
    assert parse_cost(f.spec) == f
    fp = in_pages(f, 4096, 0.1)
    pages = 1000.0  # pages per 0.1 s step = 1000 * 4096 * 8 / 0.1 bit/s
    assert float(fp(pages)) == pytest.approx(float(f(pages * 4096 * 8 / 0.1)))


def test_table_interpolates_and_starts_at_one(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("bandwidth,probability\n100Mbit,0.5\n200Mbit,0.1\n400Mbit,0\n")
    f = load_cost_csv(path)
    assert float(f(0)) == 1.0  # (0, 1) added: no bandwidth, no service
    assert float(f(50e6)) == pytest.approx(0.75)
    assert float(f(150e6)) == pytest.approx(0.3)
    assert float(f(1e9)) == 0.0
    assert float(parse_cost(str(path))(150e6)) == pytest.approx(0.3)
    assert float(parse_cost(f"csv:{path}")(150e6)) == pytest.approx(0.3)


@pytest.mark.parametrize("text,message", [
    ("bandwidth,probability\n100Mbit,0.1\n200Mbit,0.5\n", "must be non-increasing"),
    ("100Mbit,1.5\n", r"within \[0, 1\]"),
    ("100Mbit,-0.1\n", r"within \[0, 1\]"),
    ("100Mbit,0.5\n100Mbit,0.4\n", "appears twice"),
    ("100Mbit,abc\n", "is not a number"),
    ("100Mbit\n", "expected 2 columns"),
    ("100GB,0.5\n", "ambiguous"),
    ("bandwidth,probability\n", "no points"),
])
def test_malformed_tables_refused(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(CalmError, match=message):
        load_cost_csv(path)


def test_bad_cost_specs():
    for spec, message in [("mm2:rate=1", "unknown cost"), ("mm1:rate=1,size=1MiB", "lacks sla"),
                          ("mm1:rate=x,size=1MiB,sla=1s", "not a number"), ("mm1:rate=0,size=1MiB,sla=1s", "positive"),
                          ("mm1:rate=1,size=1MB,sla=1s", "ambiguous"), ("csv:/nonexistent.csv", "cannot read")]:
        with pytest.raises(CalmError, match=message):
            parse_cost(spec)
    with pytest.raises(CalmError):
        table_cost([], [])


def test_table_accepts_unsorted_points():
    f = table_cost([200e6, 100e6], [0.1, 0.5])
    assert float(f(150e6)) == pytest.approx(0.3)
    assert math.isclose(float(f(0)), 1.0)
