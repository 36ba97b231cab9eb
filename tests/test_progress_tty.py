"""Progress output: live (rich) on a terminal, plain lines off a terminal, nothing with --quiet.

The terminal runs are real: the command's stdin/stdout/stderr are a pseudo-terminal (python's pty
module), as when a user types the command, and we read what it paints there.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from collector_helpers import REPO, calm, record_workload, workload_command

ERASE_LINE = b"\x1b[2K"  # what a repainting status line sends; a log line never does
HIDE_CURSOR = b"\x1b[?25l"


def run_on_terminal(args: list[str], timeout: float = 180) -> tuple[int, bytes]:
    """Runs `calm ARGS` with a pseudo-terminal as stdin, stdout and stderr; returns what it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI", "TERM", "COLUMNS")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen([sys.executable, "-m", "calm", *args], stdin=slave, stdout=slave,
                            stderr=slave, env=env, cwd=REPO, close_fds=True)
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"calm {' '.join(args)} did not finish in {timeout} s:\n{output.decode(errors='replace')}")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other side has closed it
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(master)
    return proc.wait(30), bytes(output)


def assert_line_oriented(text: str) -> None:
    assert "\x1b" not in text, f"escape sequences off a terminal:\n{text!r}"
    assert "\r" not in text, f"carriage returns off a terminal:\n{text!r}"
    assert text == "" or text.endswith("\n")


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("progress")
    return record_workload(tmp, profile="service", pages=1024, duration=3)[0]


def test_record_shows_a_live_status_on_a_terminal(tmp_path: Path) -> None:
    cmd, _, _ = workload_command(tmp_path)
    out = tmp_path / "t.h5"
    rc, screen = run_on_terminal(["record", "--duration", "2.5", "-o", str(out), "--", *cmd])
    assert rc == 0, screen.decode(errors="replace")
    assert HIDE_CURSOR in screen and ERASE_LINE in screen, screen
    assert b"recording" in screen and b"samples" in screen
    assert b"calm record: using the hash backend" in screen
    assert b"calm record: " in screen.split(ERASE_LINE)[-1]  # the final summary stays


def test_record_prints_plain_lines_off_a_terminal(tmp_path: Path) -> None:
    cmd, _, _ = workload_command(tmp_path)
    result = calm("record", "--duration", "6", "-o", str(tmp_path / "t.h5"), "--", *cmd, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert_line_oriented(result.stderr)
    lines = result.stderr.splitlines()
    assert lines[0].startswith("calm record: using the ")
    status = [line for line in lines if line.startswith("recording ")]
    assert 1 <= len(status) <= 3, lines  # one every 5 s, not one per sample (60 samples here)
    assert_line_oriented(result.stdout)
    assert result.stdout == "" and "[ calm record: " in result.stderr


def test_analyze_shows_progress_bars_on_a_terminal(trace: Path, tmp_path: Path) -> None:
    rc, screen = run_on_terminal(["analyze", str(trace), "-o", str(tmp_path / "a"), "--no-plots"])
    assert rc == 0, screen.decode(errors="replace")
    assert HIDE_CURSOR in screen and ERASE_LINE in screen, screen
    assert b"counting" in screen and b"100%" in screen
    assert b"dirtied pages:" in screen  # the summary follows the bars


def test_analyze_and_report_are_line_oriented_off_a_terminal(trace: Path, tmp_path: Path) -> None:
    analyzed = calm("analyze", str(trace), "-o", str(tmp_path / "a"), "--no-plots", stdin=subprocess.DEVNULL)
    assert analyzed.returncode == 0, analyzed.stderr
    assert_line_oriented(analyzed.stderr)
    assert_line_oriented(analyzed.stdout)
    reported = calm("report", str(trace), "-o", str(tmp_path / "r.html"), stdin=subprocess.DEVNULL)
    assert reported.returncode == 0, reported.stderr
    assert_line_oriented(reported.stderr)
    assert reported.stdout == "" and "calm report: wrote " in reported.stderr


def test_quiet_prints_nothing(trace: Path, tmp_path: Path) -> None:
    cmd, _, _ = workload_command(tmp_path)
    for args in (["record", "-q", "--duration", "1", "-o", str(tmp_path / "t.h5"), "--", *cmd],
                 ["analyze", "-q", str(trace), "-o", str(tmp_path / "a"), "--no-plots"],
                 ["report", "-q", str(trace), "-o", str(tmp_path / "r.html")]):
        rc, screen = run_on_terminal(args)
        assert rc == 0 and screen == b"", (args, screen)


def test_demo_shows_live_progress_of_every_stage_on_a_terminal(tmp_path: Path) -> None:
    rc, screen = run_on_terminal(["demo", "--duration", "3", "-o", str(tmp_path / "demo")])
    text = screen.decode(errors="replace")
    assert rc == 0, text
    assert HIDE_CURSOR in screen and ERASE_LINE in screen
    for stage in ("[1/4] recording", "[2/4] analysing", "[3/4] replaying", "[4/4] writing the HTML report"):
        assert f"calm demo: {stage}" in text, text
    painted = [part for part in text.split("\x1b[2K") if part]  # each repaint of the status line
    assert any(p.startswith("recording ") for p in painted), text
    assert any(p.startswith("analysing: ") for p in painted), text
    assert any(p.startswith("replaying ") for p in painted), text
    assert (tmp_path / "demo" / "report.html").stat().st_size > 100_000


def test_replay_shows_a_live_status_on_a_terminal_and_lines_off_it(trace: Path, tmp_path: Path) -> None:
    args = ["replay", str(trace), "-s", "64MiB@256Mbit", "--no-plots"]
    rc, screen = run_on_terminal([*args, "-o", str(tmp_path / "tty")])
    assert rc == 0, screen.decode(errors="replace")
    assert HIDE_CURSOR in screen and b"replaying 64MiB@256Mbit: " in screen
    piped = calm(*args, "-o", str(tmp_path / "pipe"), stdin=subprocess.DEVNULL)
    assert piped.returncode == 0, piped.stderr
    assert_line_oriented(piped.stderr)
    assert piped.stderr.startswith("replaying 64MiB@256Mbit: calm\n")
    assert len(piped.stderr.splitlines()) <= 2  # not one line per algorithm: one every 5 s
