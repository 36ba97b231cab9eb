"""Files calm writes are private and never written through a symlink (issue 12).

The attack: another user plants `ln -s /etc/victim /shared/dir/NAME` in a sticky world-writable
directory with fs.protected_symlinks=0 (common in containers), for the output NAME or for the name
of a temporary file, and waits for root to run calm there. Every command must then refuse the link
(or, with --force, replace the link itself) and leave the victim alone; its files are created 0600
whatever the umask, and with --no-cmdline no argument vector is stored anywhere.
"""

from __future__ import annotations

import itertools
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import pytest

from calm.trace.reader import Trace
from tests.collector_helpers import REPO, one_line_error, wait_for_file
from tests.fault_helpers import needs_root, plant_link, run_calm, sticky_dir, unprotected_symlinks, victim  # noqa: F401

PRECIOUS = b"precious\n"
PLANTED = ("planted1", "planted2", "planted3")
COMMANDS = ("record", "analyze", "replay", "model", "report")


def _record(out: Path, *extra: str, seconds: str = "0.5") -> list[str]:
    return ["record", "-q", "--backend", "hash", "--duration", seconds, "-o", str(out), *extra,
            "--", "sleep", "5"]


@pytest.fixture(scope="module")
def trace(tmp_path_factory) -> Path:
    """A real trace of a real process, the input of analyze, replay and report."""
    folder = tmp_path_factory.mktemp("input")
    path = folder / "input.h5"
    cmd = [sys.executable, "-m", "calm.workloads.groundtruth", "--pages", "256", "--interval", "0.05",
           "--profile", "uniform:0.2", "--duration", "1.5"]
    result = run_calm("record", "-q", "--backend", "hash", "--interval", "0.05", "-o", str(path), "--", *cmd)
    assert result.returncode == 0, result.stderr
    return path


def _command(name: str, trace: Path, out: Path, *extra: str) -> list[str]:
    """Each writing command, with `out` as its output (a file for record/report, else a folder)."""
    return {
        "record": _record(out, *extra),
        "analyze": ["analyze", str(trace), "-q", "-o", str(out), *extra],
        "replay": ["replay", str(trace), "-q", "-s", "64MiB@1Gbit", "-a", "calm,xen", "-o", str(out), *extra],
        "model": ["model", "-q", "--pages", "2000", "--points", "20", "-o", str(out), *extra],
        "report": ["report", str(trace), "-q", "-o", str(out), *extra],
    }[name]


def _output_name(name: str) -> str:
    return {"record": "trace.h5", "report": "report.html"}.get(name, f"{name}-out")


def _written_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.is_dir() else [out.name]


@needs_root
@pytest.mark.parametrize("dangling", [False, True], ids=["link-to-file", "dangling-link"])
@pytest.mark.parametrize("command", ["record", "report"])
def test_a_symlink_at_the_output_is_refused_without_force(sticky_dir, victim, unprotected_symlinks,
                                                          trace, command, dangling):
    target = victim.parent / "created-through-link" if dangling else victim
    out = plant_link(sticky_dir / _output_name(command), target)
    line = one_line_error(run_calm(*_command(command, trace, out)), exit_code=1)
    assert "symbolic link" in line and "--force" in line
    assert victim.read_bytes() == PRECIOUS
    assert not (victim.parent / "created-through-link").exists()
    assert out.is_symlink()


@needs_root
@pytest.mark.parametrize("command", ["record", "report"])
def test_with_force_the_link_is_replaced_never_followed(sticky_dir, victim, unprotected_symlinks, trace, command):
    out = plant_link(sticky_dir / _output_name(command), victim)
    result = run_calm(*_command(command, trace, out, "--force"))
    assert result.returncode == 0, result.stderr
    assert victim.read_bytes() == PRECIOUS
    assert not out.is_symlink() and out.is_file()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    if command == "record":
        with Trace(out) as t:
            assert t.n_samples > 0


@needs_root
@pytest.mark.parametrize("command", ["analyze", "replay", "model"])
def test_output_folders_replace_planted_links_with_force(tmp_path, sticky_dir, victim, unprotected_symlinks,
                                                         trace, command):
    """Links planted at every file name a command writes into its output folder: refused (the folder
    is not empty) without --force; replaced, never followed, with it."""
    reference = tmp_path / "reference"
    assert run_calm(*_command(command, trace, reference)).returncode == 0
    out = sticky_dir / _output_name(command)
    out.mkdir()
    out.chmod(0o1777)
    for name in _written_files(reference):
        plant_link(out / name, victim)
    one_line_error(run_calm(*_command(command, trace, out)), exit_code=1)
    result = run_calm(*_command(command, trace, out, "--force"))
    assert result.returncode == 0, result.stderr
    assert victim.read_bytes() == PRECIOUS
    for path in out.iterdir():
        assert not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) == 0o600, path


@needs_root
def test_an_output_folder_that_is_another_users_link_is_refused(sticky_dir, victim, unprotected_symlinks, trace):
    out = plant_link(sticky_dir / "analysis", victim.parent)
    for force in ((), ("--force",)):
        line = one_line_error(run_calm("analyze", str(trace), "-q", "-o", str(out), *force), exit_code=1)
        assert "symbolic link" in line
    assert sorted(p.name for p in victim.parent.iterdir()) == ["victim"]


def _in_process(args: list[str]) -> int:
    from calm.cli import main

    return main(args)


@needs_root
@pytest.mark.parametrize("command", COMMANDS)
def test_planted_links_at_temporary_names_are_never_followed(tmp_path, sticky_dir, victim, unprotected_symlinks,
                                                             trace, command, monkeypatch):
    """Temporary files are created with O_EXCL|O_NOFOLLOW under unpredictable names. To aim at
    them, the test makes the names predictable (the first candidates of tempfile's name sequence
    are fixed) and plants links at those names, and at the fixed name older versions used for
    the compaction of a trace (`.NAME.compact`), for every file the command writes."""
    reference = tmp_path / _output_name(command)
    assert run_calm(*_command(command, trace, reference)).returncode == 0
    out = sticky_dir / _output_name(command)
    folder = out if out.suffix not in (".h5", ".html") else sticky_dir
    if folder is out:
        out.mkdir()
    names = _written_files(reference)
    for name in names:
        plant_link(folder / f".{name}.compact", victim)
        for candidate in PLANTED:
            plant_link(folder / f".{name}.{candidate}.tmp", victim)
    monkeypatch.setattr(tempfile, "_get_candidate_names",
                        lambda: itertools.chain(PLANTED, tempfile._RandomNameSequence()))
    assert _in_process(_command(command, trace, out, "--force")) == 0
    assert victim.read_bytes() == PRECIOUS
    for name in names:
        assert (folder / name).is_file() and not (folder / name).is_symlink(), name
        for candidate in PLANTED:
            assert (folder / f".{name}.{candidate}.tmp").is_symlink()  # left alone, never replaced


def _created_modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in root.rglob("*")}


def test_every_output_is_private_under_umask_022(tmp_path, trace):
    """Traces hold command lines and memory layouts: 0600 (as perf.data), folders 0700."""
    old = os.umask(0o022)
    try:
        for command in COMMANDS:
            out = tmp_path / command / _output_name(command)
            out.parent.mkdir()
            result = run_calm(*_command(command, trace, out))
            assert result.returncode == 0, result.stderr
            modes = _created_modes(out.parent)
            assert modes, command
            for name, mode in modes.items():
                expected = 0o700 if (out.parent / name).is_dir() else 0o600
                assert mode == expected, (command, name, oct(mode))
    finally:
        os.umask(old)


def test_dev_null_is_refused_even_with_force(tmp_path):
    """Not a regular file: recording into it makes no sense, replacing it would break the system."""
    line = one_line_error(run_calm(*_record(Path("/dev/null"), "--force")), exit_code=1)
    assert "not a regular file" in line
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


SECRET = "--password=hunter2"


def test_no_cmdline_stores_only_process_names(tmp_path):
    out = tmp_path / "secret.h5"
    cmd = [sys.executable, "-c", "import time; time.sleep(1.5)", SECRET]
    result = run_calm("record", "-q", "--backend", "hash", "--interval", "0.1", "--no-cmdline",
                      "-o", str(out), "--", *cmd)
    assert result.returncode == 0, result.stderr
    with Trace(out) as t:
        assert [p.cmdline for p in t.processes] == [[]]
        assert t.processes[0].name.startswith("python")
        assert t.info.command == [Path(sys.executable).name]
    with h5py.File(out, "r") as f:
        texts = [str(v) for v in f.attrs.values()]
        f.visititems(lambda name, obj: texts.extend(map(str, obj[:]))
                     if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "O" else None)
    assert not any("hunter2" in text for text in texts)
    assert b"hunter2" not in out.read_bytes()
    report = tmp_path / "secret.html"
    assert run_calm("report", str(out), "-q", "-o", str(report)).returncode == 0
    html = report.read_text()
    assert "hunter2" not in html and "not recorded (--no-cmdline)" in html


def test_a_kill_while_the_trace_is_created_leaves_nothing_that_blocks_the_next_run(tmp_path):
    """The trace appears under its name only once a first sample is on disk: a SIGKILL at that very
    moment leaves a readable trace, and before it no file at all (not a stub that needs --force)."""
    out = tmp_path / "t.h5"
    rec = subprocess.Popen([sys.executable, "-m", "calm", *_record(out, seconds="30")], cwd=REPO,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file(out, rec, timeout=60)
    finally:
        rec.kill()
        rec.wait(30)
    with Trace(out) as t:
        assert t.n_samples >= 1
