"""A bulk TCP stream paced the way QEMU paces a migration, to measure a service's cost next to one.

The CALM model splits the link strictly: the service gets B - b when the migration sends at b. A
real migration stream is not a fluid b: QEMU's migration thread sends up to b x 100 ms as fast as
the socket takes it, then sleeps to the end of the 100 ms window (`BUFFER_DELAY` and
`rate_limit_max = bandwidth / XFER_LIMIT_RATIO` in QEMU's migration/migration-stats.h and
migration.c). So during each window the service shares the link with a burst, and its requests
queue behind it in the shaper. `measure-cost-curve --competing` runs this stream next to the
service to measure F with the stream there, as the service will see it during a migration.

Two processes, each in its own network namespace: `sink PORT READY` accepts one connection and
discards what it reads; `send HOST PORT RATE READY` connects and sends windows of RATE x 100 ms
(RATE 0 = unpaced: as fast as TCP allows). Each writes READY once it is set up (the handshake
the caller waits on). On SIGTERM the sender prints {"bytes": N, "seconds": S} and exits.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from calm.core.ready import NotReady, announce, wait_for  # noqa: E402

WINDOW_S = 0.100  # QEMU's BUFFER_DELAY
CHUNK = 64 * 1024


def _announce(ready: str) -> None:
    announce(Path(ready))  # calm's own ready-file handshake: atomic, private, no symlink followed


def sink(port: int, ready: str) -> int:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(1)
    _announce(ready)
    conn, _ = server.accept()
    buf = bytearray(1 << 20)
    while conn.recv_into(buf):
        pass
    return 0


class _Stop(Exception):
    pass


def _stop(signum, frame):
    raise _Stop


def send(host: str, port: int, rate_bps: float, ready: str) -> int:
    signal.signal(signal.SIGTERM, _stop)
    conn = socket.create_connection((host, port))
    payload = os.urandom(CHUNK)  # incompressible, as guest memory mostly is not, but the veth does not care
    per_window = int(rate_bps / 8 * WINDOW_S)
    sent, t0 = 0, time.monotonic()
    _announce(ready)
    try:
        window_end = t0
        while True:
            budget = per_window if per_window > 0 else CHUNK
            while budget > 0:
                n = conn.send(payload[:min(CHUNK, budget)])
                sent += n
                budget -= n
            if per_window > 0:
                window_end += WINDOW_S
                delay = window_end - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:  # the link is slower than the rate: send on, as QEMU does
                    window_end = time.monotonic()
    except (_Stop, BrokenPipeError, ConnectionResetError):
        pass
    print(json.dumps({"bytes": sent, "seconds": time.monotonic() - t0}), flush=True)
    return 0


class BulkStream:
    """`with BulkStream(net, rate_bps, workdir):` a paced stream from the server namespace to the
    client namespace of a calm_netns.VethNet, through the server's shaped egress; `.result` holds
    the sender's {"bytes", "seconds"} after the block."""

    PORT = 5999

    def __init__(self, net, rate_bps: float, workdir: Path, timeout: float = 60.0) -> None:
        self.net, self.rate_bps, self.workdir, self.timeout = net, rate_bps, Path(workdir), timeout
        self.procs: list[subprocess.Popen] = []
        self.result: dict | None = None

    def _start(self, ns: str, args: list[str], ready: Path) -> subprocess.Popen:
        ready.unlink(missing_ok=True)  # names carry our pid: runs side by side do not mix
        proc = subprocess.Popen([*self.net.exec_prefix(ns), sys.executable, __file__, *args, str(ready)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        try:  # the process's own handshake; it exits if it cannot set up
            wait_for(ready, proc, f"bulk stream {args[0]}", self.timeout)
        except NotReady as exc:
            tail = f": {proc.stderr.read().strip()}" if exc.exit_status is not None else ""
            raise RuntimeError(f"{exc}{tail}") from None
        return proc

    def __enter__(self) -> "BulkStream":
        try:
            self._start(self.net.client_ns, ["sink", str(self.PORT)], self.workdir / f"calm-bulk-{os.getpid()}-sink.ready")
            self._start(self.net.server_ns, ["send", self.net.client_ip, str(self.PORT), f"{self.rate_bps:.0f}"],
                        self.workdir / f"calm-bulk-{os.getpid()}-send.ready")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                out, _ = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if out and out.strip().startswith("{"):
                self.result = json.loads(out.strip().splitlines()[-1])
        self.procs.clear()

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "sink":
        return sink(int(argv[1]), argv[2])
    if len(argv) == 5 and argv[0] == "send":
        return send(argv[1], int(argv[2]), float(argv[3]), argv[4])
    print("usage: calm_bulk.py sink PORT READY | send HOST PORT RATE_BPS READY", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
