"""Run Debian's PostgreSQL (and Redis) privately for profiling, tests and benchmarks.

WHY private instances: the system's clusters (pg_ctlcluster, /etc/postgresql) and services are not
ours to change, and a measurement must be reproducible. Each server gets a fresh temporary
directory that holds its data and its unix socket (no TCP port, so parallel runs never collide),
and runs in the foreground in its own session, so the Popen pid is the server's main process (the
pid to give `calm record --pid ... --children`) and stopping it leaves nothing behind.

PostgreSQL refuses to run as root: started by root, it runs as the `postgres` user (Debian's
package creates it; Popen switches user itself, so no wrapper process stands between), in a
directory handed to that user. Readiness is PostgreSQL's
own answer (pg_isready), not a sleep.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

PG_ROOT = Path("/usr/lib/postgresql")
REDIS_SERVER = Path("/usr/bin/redis-server")
REDIS_BENCHMARK = Path("/usr/bin/redis-benchmark")


class ServiceError(RuntimeError):
    """A server could not be started or stopped; the message says why."""


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(PG_ROOT.glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else None


def postgres_installed() -> bool:
    return pg_bin() is not None and shutil.which("pgbench") is not None


def redis_installed() -> bool:
    return REDIS_SERVER.exists() and REDIS_BENCHMARK.exists()


def _as_user(user: str | None) -> dict:
    """Popen arguments that run a command as `user` (no wrapper process: the pid is the program's)."""
    if not user:
        return {}
    pw = pwd.getpwnam(user)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


class Postgres:
    """A private PostgreSQL server on a unix socket in a temporary directory.

    Use as a context manager; `pid` is the postmaster, `socket_dir` the host for clients (-h)."""

    def __init__(self, *, shared_buffers: str = "64MB", prefix: str = "calm-pg-", extra: dict | None = None):
        bindir = pg_bin()
        if bindir is None:
            raise ServiceError("PostgreSQL is not installed (scripts/install-deps installs Debian's postgresql)")
        self.bin = bindir
        self.user = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.log = self.root / "postgres.log"
        self.settings = {"shared_buffers": shared_buffers, "listen_addresses": "''",
                         "unix_socket_directories": f"'{self.root}'", "fsync": "off",
                         "max_connections": "20", **(extra or {})}
        self.proc: subprocess.Popen | None = None

    def _run(self, *cmd: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, cwd=self.root,
                              **_as_user(self.user), **kwargs)
        if check and proc.returncode != 0:
            raise ServiceError(f"`{' '.join(cmd)}` failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
        return proc

    def start(self, timeout: float = 120) -> "Postgres":
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        options = [f"-c{k}={v.strip(chr(39))}" for k, v in self.settings.items()]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([str(self.bin / "postgres"), "-D", str(self.data), *options],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         cwd=self.root, **_as_user(self.user))
        deadline = time.monotonic() + timeout
        while self._run(str(self.bin / "pg_isready"), "-q", "-h", str(self.socket_dir), check=False).returncode != 0:
            if self.proc.poll() is not None:
                raise ServiceError(f"postgres exited with {self.proc.returncode}: {self.log.read_text()[-500:]}")
            if time.monotonic() > deadline:
                raise ServiceError(f"postgres not ready after {timeout:g} s: {self.log.read_text()[-500:]}")
            time.sleep(0.1)
        return self

    @property
    def pid(self) -> int:
        """The postmaster."""
        assert self.proc is not None
        return self.proc.pid

    def client(self, program: str, *args: str) -> list[str]:
        """A client command line (psql, pgbench) for this server (unix socket, trust auth)."""
        return [program, "-h", str(self.socket_dir), "-U", "postgres", *args]

    def client_popen(self, program: str, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.client(program, *args), cwd=self.root, **kwargs)

    def pgbench_init(self, scale: int) -> None:
        self._run(*self.client("pgbench", "-i", "-q", "-s", str(scale), "postgres"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Postgres":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Redis:
    """A private redis-server on a unix socket in a temporary directory (no persistence)."""

    def __init__(self, *, prefix: str = "calm-redis-", maxmemory: str = "0"):
        if not redis_installed():
            raise ServiceError("Redis is not installed (apt-get install redis-server redis-tools)")
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.socket = self.root / "redis.sock"
        self.maxmemory = maxmemory
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "Redis":
        self.proc = subprocess.Popen(
            [str(REDIS_SERVER), "--port", "0", "--unixsocket", str(self.socket), "--save", "",
             "--appendonly", "no", "--dir", str(self.root), "--maxmemory", self.maxmemory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            ping = subprocess.run(["redis-cli", "-s", str(self.socket), "ping"], capture_output=True, text=True)
            if ping.stdout.strip() == "PONG":
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise ServiceError("redis-server did not start")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Redis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
