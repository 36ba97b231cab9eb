"""Run Debian's Apache httpd with calm's own configuration (scripts/apache/) for profiling and tests.

WHY a private runtime directory: the system's /etc/apache2 setup is not ours to change, and the
profile must be reproducible. Each server gets a fresh directory (config rendered from
scripts/apache/httpd.conf.in, generated pages of known sizes, the CGI program, logs, pid file)
under /tmp, world-traversable because the prefork workers drop to www-data when started as root.
The server runs in the foreground (`-DFOREGROUND`) in its own session, so the Popen pid is the
parent httpd (the pid to give `calm record --pid ... --children`) and stopping it cannot leave
workers behind.
"""

from __future__ import annotations

import os
import pwd
import grp
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from string import Template

import numpy as np
import psutil

from calm_apt import apt_install

HERE = Path(__file__).resolve().parent / "apache"
APACHE_BIN = Path("/usr/sbin/apache2")
MODULES = Path("/usr/lib/apache2/modules")
DEBIAN_PACKAGES = ("apache2",)

# name -> size in bytes; .html is text (compressible), .bin incompressible (seeded random bytes)
PAGES = {
    "index.html": 1024,
    "page-16k.html": 16 * 1024,
    "blob-128k.bin": 128 * 1024,
    "blob-1m.bin": 1024 * 1024,
    "text/words-256k.html": 256 * 1024,
}


class ApacheError(RuntimeError):
    """Apache could not be installed, started or stopped; the message says why."""


def installed() -> bool:
    return APACHE_BIN.exists() and (MODULES / "mod_mpm_prefork.so").exists()


def ensure_installed() -> None:
    """Installs Debian's apache2 when missing (idempotent; needs root and the apt registry)."""
    if installed():
        return
    apt_install(DEBIAN_PACKAGES, ApacheError)
    if not installed():
        raise ApacheError(f"apache2 installed but {APACHE_BIN} or the prefork module is missing")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _text(n: int) -> bytes:
    line = b"<p>calm profiles how a live service dirties its memory, page by page.</p>\n"
    head = b"<!DOCTYPE html><html><head><title>calm test page</title></head><body>\n"
    body = head + line * (n // len(line) + 1)
    return body[: n - len(b"</body></html>\n")] + b"</body></html>\n"


def write_site(root: Path) -> None:
    """Pages of known sizes, the SSI page and the CGI program under root/htdocs and root/cgi-bin."""
    rng = np.random.default_rng(7)
    for name, size in PAGES.items():
        path = root / "htdocs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_text(size) if name.endswith(".html") else rng.bytes(size))
    shutil.copy(HERE / "status.shtml", root / "htdocs" / "status.shtml")
    (root / "cgi-bin").mkdir(exist_ok=True)
    shutil.copy(HERE / "cgi-bin" / "dynamic.cgi", root / "cgi-bin" / "dynamic.cgi")
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.suffix == ".cgi" else 0o644)


def _user_group() -> str:
    """Workers drop privileges only when started as root (httpd refuses to serve as root)."""
    if os.geteuid() != 0:
        return ""
    for user, group in (("www-data", "www-data"), ("nobody", "nogroup")):
        try:
            pwd.getpwnam(user), grp.getgrnam(group)
        except KeyError:
            continue
        return f"User {user}\nGroup {group}"
    raise ApacheError("running as root but neither www-data nor nobody exists for the httpd workers")


class Apache:
    """One httpd: `with Apache(listen="127.0.0.1:8080") as httpd: httpd.pid, httpd.url("/")`.

    `prefix` runs it under another command, e.g. ["ip", "netns", "exec", NAME] (which execs, so
    the pid is still httpd's)."""

    def __init__(self, listen: str | None = None, prefix: list[str] | None = None,
                 root: Path | None = None, keep_root: bool = False):
        self.listen = listen or f"127.0.0.1:{free_port()}"
        self.prefix = prefix or []
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="calm-apache-"))
        self.keep_root = keep_root or root is not None
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def conf(self) -> Path:
        return self.root / "httpd.conf"

    @property
    def error_log(self) -> Path:
        return self.root / "logs" / "error.log"

    def url(self, path: str = "/") -> str:
        return f"http://{self.listen}{path}"

    def render(self) -> None:
        for sub in ("logs", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        write_site(self.root)
        text = Template((HERE / "httpd.conf.in").read_text()).substitute(
            root=str(self.root), listen=self.listen, modules=str(MODULES), user_group=_user_group())
        self.conf.write_text(text)

    def start(self, timeout: float = 20.0) -> int:
        """Starts httpd and waits until its workers are up; returns the parent's pid."""
        if not installed():
            raise ApacheError(f"{APACHE_BIN} not installed: run scripts/install-deps (Debian package apache2)")
        self.render()
        check = subprocess.run([str(APACHE_BIN), "-t", "-f", str(self.conf)], capture_output=True, text=True)
        if check.returncode != 0:
            raise ApacheError(f"httpd rejects {self.conf}: {check.stderr.strip()}")
        self.proc = subprocess.Popen([*self.prefix, str(APACHE_BIN), "-DFOREGROUND", "-f", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
                log = self.error_log.read_text(errors="replace").strip() if self.error_log.exists() else ""
                raise ApacheError(f"httpd exited with status {self.proc.returncode}: {err or log[-500:]}")
            if self._ready():
                return self.proc.pid
            time.sleep(0.05)
        self.stop()
        raise ApacheError(f"httpd did not start within {timeout:g} s (see {self.error_log})")

    def _ready(self) -> bool:
        log = self.error_log.read_text(errors="replace") if self.error_log.exists() else ""
        if "resuming normal operations" not in log:
            return False
        try:
            return len(psutil.Process(self.proc.pid).children()) >= 4  # StartServers
        except psutil.NoSuchProcess:
            return False

    def workers(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to the parent (httpd stops its workers), then SIGKILL to its session if needed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        try:  # workers that outlived the parent are in its session (process group = parent pid)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.stderr:
            self.proc.stderr.close()
        if not self.keep_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Apache":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
