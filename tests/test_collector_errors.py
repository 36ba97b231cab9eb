"""Bad input to `calm record`: one clear line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from calm.collector.backends import soft_dirty_supported
from tests.collector_helpers import calm, one_line_error


def _unused_pid() -> int:
    pid = 4_000_000
    while psutil.pid_exists(pid):
        pid -= 1
    return pid


def test_pid_that_does_not_exist(tmp_path):
    pid = _unused_pid()
    line = one_line_error(calm("record", "--pid", str(pid), "-o", str(tmp_path / "x.h5")))
    assert f"no process with pid {pid}" in line
    assert not (tmp_path / "x.h5").exists()


def test_pid_that_already_exited(tmp_path):
    """A child that exited but was not reaped yet (a zombie) is refused."""
    child = subprocess.Popen(["true"])
    psutil.Process(child.pid)
    for _ in range(200):
        if psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE:
            break
        __import__("time").sleep(0.01)
    try:
        line = one_line_error(calm("record", "--pid", str(child.pid), "-o", str(tmp_path / "x.h5")))
    finally:
        child.wait()
    assert "has exited" in line


def test_command_that_does_not_exist(tmp_path):
    line = one_line_error(calm("record", "-o", str(tmp_path / "x.h5"), "--", "/nonexistent/cmd"))
    assert "command not found" in line


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "old.h5"
    out.write_bytes(b"precious")
    line = one_line_error(calm("record", "--pid", str(os.getppid()), "-o", str(out)))
    assert "exists; use --force" in line
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_interval_must_be_positive(tmp_path, value):
    line = one_line_error(calm("record", "--interval", value, "--pid", str(os.getppid()),
                               "-o", str(tmp_path / "x.h5")), exit_code=2)
    assert "--interval" in line and ("must be positive" in line or "cannot parse" in line)


def test_output_directory_missing(tmp_path):
    line = one_line_error(calm("record", "--pid", str(os.getppid()), "-o",
                               str(tmp_path / "missing" / "x.h5")))
    assert "does not exist" in line


def test_nothing_to_record(tmp_path):
    line = one_line_error(calm("record", "-o", str(tmp_path / "x.h5")))
    assert "nothing to record" in line


@pytest.mark.skipif(soft_dirty_supported()[0], reason="this kernel supports soft-dirty")
def test_soft_dirty_backend_refused_on_this_kernel(tmp_path):
    line = one_line_error(calm("record", "--backend", "soft-dirty", "--pid", str(os.getppid()),
                               "-o", str(tmp_path / "x.h5")))
    assert "soft-dirty backend unavailable" in line and "CONFIG_MEM_SOFT_DIRTY" in line


def test_auto_backend_says_which_it_picked(tmp_path):
    out = tmp_path / "x.h5"
    result = calm("record", "--duration", "0.3", "-o", str(out), "--", "sleep", "5", check=True)
    expected = "soft-dirty backend" if soft_dirty_supported()[0] else "hash backend: soft-dirty unavailable"
    assert expected in result.stderr


UNPRIVILEGED = 65534  # nobody


def _run_unprivileged(args: list[str]) -> tuple[int, str]:
    """Runs the calm CLI in a forked child that dropped root, capturing its stderr.

    A fork (not exec) keeps the already-imported interpreter and modules, which may live in a
    directory the unprivileged user cannot read.
    """
    from calm.cli import build_parser

    build_parser()  # imports every subcommand module before dropping privileges

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            sys.stderr = os.fdopen(write_fd, "w")  # pytest replaced sys.stderr; use our pipe
            os.setgroups([])
            os.setgid(UNPRIVILEGED)
            os.setuid(UNPRIVILEGED)
            from calm.cli import main

            code = main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 99
        sys.stderr.flush()
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        stderr = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stderr


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")


@pytest.fixture
def shared_dir():
    """A directory the unprivileged user can reach (pytest's tmp_path is root-only)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="calm-test-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


@needs_root
def test_no_permission_to_read_the_target(shared_dir):
    tmp_path = shared_dir
    target = subprocess.Popen(["sleep", "30"])  # root's process
    try:
        code, stderr = _run_unprivileged(["record", "--backend", "hash", "--pid", str(target.pid),
                                          "-o", str(tmp_path / "x.h5")])
    finally:
        target.kill()
        target.wait()
    result = subprocess.CompletedProcess([], code, "", stderr)
    line = one_line_error(result)
    assert "no permission" in line
    assert not (tmp_path / "x.h5").exists()


@needs_root
def test_output_directory_read_only(shared_dir):
    readonly = shared_dir / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    me = subprocess.Popen(["sleep", "30"], user=UNPRIVILEGED, group=UNPRIVILEGED)
    try:
        code, stderr = _run_unprivileged(["record", "--pid", str(me.pid), "-o",
                                          str(readonly / "x.h5")])
    finally:
        me.kill()
        me.wait()
    line = one_line_error(subprocess.CompletedProcess([], code, "", stderr))
    assert "not writable" in line


def test_kernel_thread_has_no_memory_to_record(tmp_path):
    kthreadd = next((p for p in psutil.process_iter(["name", "pid"]) if p.info["name"] == "kthreadd"), None)
    if kthreadd is None:
        pytest.skip("no kthreadd visible in this pid namespace")
    line = one_line_error(calm("record", "--pid", str(kthreadd.pid), "-o", str(tmp_path / "x.h5")))
    assert "no user memory" in line


def test_usage_errors_are_one_line(tmp_path):
    result = calm("record", "--interval", "abc", "--pid", "1", "-o", str(tmp_path / "x.h5"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "cannot parse duration 'abc'" in result.stderr
