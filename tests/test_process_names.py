"""Processes are named as a user knows them: by the role they give themselves in their cmdline
(PostgreSQL's "postgres: checkpointer"), and by the program as it was run (a symlink's name, as
Debian's /usr/bin/redis-server -> redis-check-rdb). Real processes where one can run here; the
title rule on the cmdline bytes that real servers leave (tests/test_postgres_profile.py checks
PostgreSQL's own)."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from calm.collector.targets import describe, process_title


@pytest.mark.parametrize("raw,title", [
    (b"postgres: checkpointer \0\0\0\0\0\0", "postgres: checkpointer"),  # PostgreSQL 15, NUL padded
    (b"postgres: postgres pgbench [local] idle                  ", "postgres: postgres pgbench [local] idle"),
    (b"/usr/bin/redis-server 127.0.0.1:6379\0\0\0", "/usr/bin/redis-server 127.0.0.1:6379"),
    (b"nginx: worker process\0", "nginx: worker process"),
    (b"/usr/sbin/apache2\0-k\0start\0", ""),  # an argv left as it was: no title
    (b"python3\0", ""),
    (b"", ""),
])
def test_title_is_the_cmdline_a_process_set(raw, title):
    assert process_title(raw) == title


def test_a_symlinked_program_keeps_the_name_it_was_run_by(tmp_path):
    link = tmp_path / "my-server"
    link.symlink_to(sys.executable)
    proc = subprocess.Popen([str(link), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        details = describe(psutil.Process(proc.pid))
    finally:
        proc.stdin.close()
        proc.wait(10)
    assert details.exe == str(link)
    assert os.path.realpath(details.exe) == os.path.realpath(sys.executable)
    assert details.title == ""


def test_a_program_run_through_path_is_named_by_its_path(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srv").symlink_to(sys.executable)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    proc = subprocess.Popen(["srv", "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, env=env)
    try:
        old_path = os.environ["PATH"]
        os.environ["PATH"] = env["PATH"]  # calm resolves a bare argv[0] through its own PATH
        try:
            details = describe(psutil.Process(proc.pid))
        finally:
            os.environ["PATH"] = old_path
    finally:
        proc.stdin.close()
        proc.wait(10)
    assert details.exe == str(tmp_path / "bin" / "srv")
