"""Every command a user can run, the project's scripts included, answers a usage error with one
line on stderr and exit 2 (calm's own subcommands are tested with their inputs elsewhere)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from collector_helpers import REPO

COMMANDS = [
    ["scripts/calm-vm", "--cpus", "x", "--", "true"],
    ["scripts/profile-apache", "--bogus"],
    ["scripts/measure-cost-curve", "--bogus"],
    ["scripts/profile-search", "--bogus"],
    ["scripts/bench_collector.py", "--bogus"],
    ["scripts/bench_analyze.py", "--bogus"],
    ["scripts/bench_replay.py", "--repeat", "x"],
    ["scripts/check_replay_regression.py", "--bogus"],
    ["scripts/bench_sweep.py", "--workers", "x"],
    ["scripts/bench_loadgen.py", "--bogus"],
    ["scripts/bench_pagemap_scan.py", "--bogus"],
    ["scripts/bench_startup.py", "--bogus"],
    ["scripts/compare_calm_synthetic.py", "--bogus"],
    ["scripts/bench_corpus.py", "x", "--workers", "0"],
    ["scripts/corner_montecarlo.py", "--seeds", "x"],
    ["scripts/refresh-readme-figures", "--only", "nothing"],
    ["scripts/validate-migration", "grid", "-o", "x", "--bandwidths", "0"],
    ["scripts/validate-migration", "bogus"],
    ["scripts/inband-migration", "-o", "x", "--link", "fast"],
    ["scripts/inband-migration", "-o", "x", "--policies", "xen"],
    ["scripts/inband-migration", "-o", "x", "--page", "index.html"],
    ["scripts/guest-httpd", "--host", "127.0.0.1", "--port", "70000"],
    ["scripts/guest-httpd", "--port", "8080"],
    ["scripts/bench_hash_read.py", "--blocks", "0"],
    ["scripts/bench_hash_read.py", "--walks", "--blocks", "64"],
    ["scripts/bench_service.py", "--bogus"],
    ["scripts/bench_footprint.py", "--bogus"],
    ["scripts/sqlite_fill_update.py", "--rows", "0"],
    ["-m", "calm.workloads.groundtruth", "--pages", "x"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_usage_error_is_one_line(command, tmp_path):
    args = [sys.executable, *(command if command[0] == "-m" else [str(REPO / command[0]), *command[1:]])]
    proc = subprocess.run(args, cwd=tmp_path if command[0] != "-m" else REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and ": error: " in lines[0] and "--help" in lines[0], proc.stderr
