"""Debian packages for the services calm's scripts run (Apache, the JDK and Lucene): installed with
apt-get when missing, as root or through sudo, never interactively."""

from __future__ import annotations

import os
import subprocess


def apt_install(packages: tuple[str, ...] | list[str], error: type[Exception]) -> None:
    """`apt-get update` then `apt-get install --no-install-recommends PACKAGES`; a failure raises
    `error` with apt's last line."""
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        proc = subprocess.run(sudo + cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise error(f"`{' '.join(cmd)}` failed: {proc.stderr.strip().splitlines()[-1:]}")
