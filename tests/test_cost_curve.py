"""scripts/measure-cost-curve for real: Apache in a network namespace behind a tbf-limited veth, Poisson
load from a second namespace, three bandwidth steps.

Measured violation fractions carry binomial noise, so the raw curve is checked to be non-increasing
up to its 95% intervals (a later, higher-bandwidth point may not lie clearly above an earlier one),
with a clear drop from the lowest bandwidth (below the offered load) to the highest (three times
it). The written cost table must load in replay and be strictly what replay accepts.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from calm.replay.cost import load_cost_csv

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "measure-cost-curve"
sys.path.insert(0, str(REPO / "scripts"))

from calm_apache import installed  # noqa: E402

# 10 requests/s of 128 KiB offer 10.5 Mbit/s: 7 Mbit is overloaded, 11 Mbit loaded, 30 Mbit idle
STEPS = ("7Mbit", "11Mbit", "30Mbit")


@pytest.fixture(autouse=True)
def _requirements():
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces, tc)")
    if shutil.which("tc") is None or shutil.which("ip") is None:
        missing.append("iproute2")
    if not installed():
        missing.append("apache2")
    if not missing:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"cost-curve test cannot run in CI: needs {', '.join(missing)} (scripts/install-deps)")
    pytest.skip(f"needs {', '.join(missing)}")


def namespaces_of(pid: int) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"calm-cc-{pid}-")]


def script_pid(stdout: str) -> tuple[int, int]:
    m = re.search(r"httpd (\d+) in netns calm-cc-(\d+)-srv", stdout)
    assert m, stdout
    return int(m[1]), int(m[2])


def assert_gone(httpd: int, pid: int) -> None:
    assert namespaces_of(pid) == [], "network namespaces left behind"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"cc{pid}s" not in links and f"cc{pid}c" not in links
    assert not psutil.pid_exists(httpd) or psutil.Process(httpd).status() == psutil.STATUS_ZOMBIE


def wait_for_load(script: subprocess.Popen, timeout: float = 120) -> None:
    """Waits until the script's `calm load` runs (a handshake on the process tree, not a delay)."""
    deadline = time.monotonic() + timeout
    while True:
        for child in psutil.Process(script.pid).children(recursive=True):
            try:
                if child.cmdline()[1:4] == ["-m", "calm", "load"]:
                    return
            except (psutil.Error, IndexError):
                continue
        assert script.poll() is None, "the script exited before its load started"
        assert time.monotonic() < deadline, f"no calm load started in {timeout} s"
        time.sleep(0.02)


def test_three_step_cost_curve(tmp_path):
    out = tmp_path / "curve"
    proc = subprocess.run([sys.executable, str(SCRIPT), "-o", str(out), "--no-install", "--steps", ",".join(STEPS),
                           "--rate", "10", "--duration", "10", "--sla", "1", "--seed", "3"],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    httpd, pid = script_pid(proc.stdout)
    assert_gone(httpd, pid)

    rows = list(csv.DictReader((out / "cost-measured.csv").open()))
    assert [float(r["bandwidth_bps"]) for r in rows] == [7e6, 11e6, 30e6]
    p = [float(r["probability"]) for r in rows]
    lo = [float(r["ci95_low"]) for r in rows]
    hi = [float(r["ci95_high"]) for r in rows]
    for r in rows:
        assert int(r["requests"]) >= 60, r  # ~100 Poisson arrivals per step
        assert float(r["probability"]) == pytest.approx(int(r["violations"]) / int(r["requests"]))
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            assert lo[j] <= hi[i], f"violation fraction rises beyond noise: {p}"
    assert p[0] >= 0.5 and p[-1] <= 0.05 and p[0] - p[-1] >= 0.5, p
    # the limit is real: the overloaded step delivers no more than its tbf rate (plus one burst)
    delivered = [float(r["delivered_bps"]) for r in rows]
    assert delivered[0] <= 7e6 * 1.1, delivered
    assert delivered[-1] >= 0.7 * 10 * 128 * 1024 * 8, delivered

    table = load_cost_csv(out / "cost.csv")  # exactly what calm replay --cost reads
    assert list(table.bandwidth_bps[-3:]) == [7e6, 11e6, 30e6]
    fitted = [float(r["fitted"]) for r in rows]
    assert list(table.probability[-3:]) == pytest.approx(fitted, abs=1e-6)
    assert all(a >= b for a, b in zip(fitted, fitted[1:]))
    if all(a >= b for a, b in zip(p, p[1:])):
        assert fitted == pytest.approx(p)  # the fit changes nothing when the raw points are monotone
    assert (out / "cost-curve.png").stat().st_size > 0 and (out / "cost-curve.svg").stat().st_size > 0

    replay = subprocess.run([sys.executable, "-m", "calm", "replay", "--uniform", "0.01", "--interval", "0.1",
                             "-s", "16MiB@20Mbit", "-a", "calm,fixed", "--cost", f"csv:{out / 'cost.csv'}",
                             "-o", str(tmp_path / "replay"), "--no-plots"],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert replay.returncode == 0, replay.stderr
    assert "calm" in replay.stdout and "fixed" in replay.stdout


def test_cost_next_to_a_competing_stream(tmp_path):
    """--competing: on a 30 Mbit/s link, a QEMU-paced stream at 0, 10 and 25 Mbit/s next to the
    10.5 Mbit/s the service offers; the points are written at Bs = B - b."""
    out = tmp_path / "curve"
    proc = subprocess.run([sys.executable, str(SCRIPT), "-o", str(out), "--no-install", "--link", "30Mbit",
                           "--competing", "0,10Mbit,25Mbit", "--rate", "10", "--duration", "8", "--sla", "1",
                           "--no-plot"], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    httpd, pid = script_pid(proc.stdout)
    assert_gone(httpd, pid)
    assert not [p for p in psutil.process_iter(["cmdline"]) if "calm_bulk.py" in " ".join(p.info["cmdline"] or [])]
    rows = list(csv.DictReader((out / "cost-measured.csv").open()))
    assert [float(r["bandwidth_bps"]) for r in rows] == [5e6, 20e6, 30e6]
    assert [r["competing_bps"] for r in rows][:2] == ["25000000.0", "10000000.0"]
    assert rows[2]["stream_bps"] == ""  # b = 0: no stream at all
    # with room on the link the stream keeps its pace (QEMU's windows of b x 100 ms)
    assert 0.8 * 10e6 <= float(rows[1]["stream_bps"]) <= 1.1 * 10e6, rows[1]
    assert float(rows[0]["stream_bps"]) <= 25e6 * 1.1, rows[0]
    p = [float(r["probability"]) for r in rows]
    assert p[-1] <= 0.05 and float(rows[-1]["ci95_low"]) <= float(rows[0]["ci95_high"]), p
    load_cost_csv(out / "cost.csv")


def test_cleanup_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "-o", str(tmp_path / "c"), "--no-install",
                             "--steps", "5Mbit,10Mbit,20Mbit", "--duration", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    first = proc.stdout.readline()
    httpd, pid = script_pid(first)
    assert len(namespaces_of(pid)) == 2
    wait_for_load(proc)  # inside the first step's load
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert_gone(httpd, pid)
    assert not (tmp_path / "c" / "cost.csv").exists()


@pytest.mark.parametrize("args, code, message", [
    (["--steps", "5Mbit,10Mbit"], 1, "at least 3"),
    (["--steps", "5M,10M,20M"], 1, "ambiguous"),
    (["--rate", "0"], 2, "--rate: must be greater than 0"),
    (["--service", "command"], 1, "--service command needs --command"),
    (["--service", "command", "--command", "python3 -m http.server"], 1, "--command must contain {port}"),
    (["--service", "command", "--command", "srv {port}", "--url-file", "/nonexistent/urls"], 1, "cannot read --url-file"),
    (["--path", "/x"], 1, "--path only apply to --service command"),
    (["--service", "search", "--heap", "lots"], 1, "heap size 'lots'"),
    (["--service", "search", "--docs", "0"], 2, "--docs: must be at least 1"),
    (["--competing", "0,10Mbit,20Mbit"], 1, "--competing and --link go together"),
    (["--link", "30Mbit", "--competing", "0,10Mbit,30Mbit"], 1, "leaves the service nothing"),
    (["--link", "30Mbit", "--competing", "0,10Mbit,20Mbit", "--steps", "1Mbit,2Mbit,3Mbit"], 1, "replaces --steps"),
])
def test_bad_input_one_line(tmp_path, args, code, message):
    proc = subprocess.run([sys.executable, str(SCRIPT), "-o", str(tmp_path), "--no-install", *args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
