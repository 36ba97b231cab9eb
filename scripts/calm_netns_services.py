"""Services that scripts/measure-cost-curve can measure inside its server network namespace.

Each is a context manager that starts the service in the namespace (`ip netns exec`, which execs,
so the pid is the service's), waits for its own readiness signal, yields what the load generator
needs (`Served`), and stops it on exit, also on error or Ctrl-C:

- `serve_apache`: calm's Apache httpd configuration, one page of known size;
- `serve_search`: calm's Lucene search service, its query log as the request mix;
- `serve_command`: any HTTP service given as a command line, `{host}` and `{port}` replaced by
  the namespace's address and port; ready once a socket listens on that port in the namespace
  (`ss -N NETNS`), so no sleep stands in for its start-up.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from calm_apache import PAGES, Apache
from calm_netns import NetnsError, VethNet
from calm_search import SearchConfig, SearchService

PORT = 8080


@dataclass
class Served:
    """A running service: its pid, the URLs the load picks from, a label, and the response size
    when it is known in advance (None: measured from the responses)."""

    name: str  # the program, as the first line of the script's output names it
    pid: int
    urls: list[str]
    label: str
    size: int | None = None


@contextmanager
def serve_apache(net: VethNet, page: str) -> Iterator[Served]:
    with Apache(listen=f"{net.server_ip}:{PORT}", prefix=net.exec_prefix(net.server_ns)) as httpd:
        yield Served("httpd", httpd.pid, [httpd.url(f"/{page}")], f"Apache, {page}", PAGES[page])


@contextmanager
def serve_search(net: VethNet, config: SearchConfig) -> Iterator[Served]:
    with SearchService(config, host=net.server_ip, port=PORT, prefix=net.exec_prefix(net.server_ns),
                       gc_log=False) as svc:
        yield Served("java", svc.pid, svc.query_urls(), f"Lucene search service, {config.docs} documents, query log")


@contextmanager
def serve_command(net: VethNet, command: str, paths: list[str], timeout: float = 300.0) -> Iterator[Served]:
    argv = [a.replace("{host}", net.server_ip).replace("{port}", str(PORT)) for a in shlex.split(command)]
    if not argv:
        raise NetnsError("--command is empty")
    log = Path(f"/tmp/calm-cc-{os.getpid()}-service.log")
    with log.open("wb") as out:
        try:
            proc = subprocess.Popen([*net.exec_prefix(net.server_ns), *argv], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise NetnsError(f"cannot run {argv[0]}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + timeout
        while not _listening(net.server_ns, PORT):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-2:]
                raise NetnsError(f"the service exited with status {proc.returncode} before listening on port "
                                 f"{PORT}: {' / '.join(tail) or 'no output'}")
            if time.monotonic() > deadline:
                raise NetnsError(f"the service did not listen on port {PORT} within {timeout:g} s (see {log})")
            time.sleep(0.05)
        urls = [f"http://{net.server_ip}:{PORT}{p if p.startswith('/') else '/' + p}" for p in paths]
        program = argv[0].rsplit("/", 1)[-1]
        yield Served(program, proc.pid, urls, f"{program}, {len(paths)} path(s)")
    finally:
        _stop(proc)
        log.unlink(missing_ok=True)


def _listening(ns: str, port: int) -> bool:
    out = subprocess.run(["ss", "-N", ns, "-Hltn", f"sport = :{port}"], capture_output=True, text=True)
    return out.returncode == 0 and bool(out.stdout.strip())


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM to the service's session, then SIGKILL to whatever of it is left (forked children
    included: they share the session's process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)
