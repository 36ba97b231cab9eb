"""How slow this machine is right now, measured alongside a test instead of assumed.

Tests that judge latencies (the load generator's) cannot use fixed margins: on a quiet machine a
trivial HTTP request takes a few ms, on two cores shared with CPU hogs and VMs it can take hundreds.
`RequestPing` measures that in the same run: a separate process sends one trivial GET (`/ping`) to
the test server every PERIOD seconds, closed loop, for as long as the test runs, and records each one's time
from its *scheduled* start to the last byte (so a stall that delays the pinger's own wake-up counts
too). A test then sets its margins from `worst` and `quantile()`: slow on a busy machine, never
wrong because of it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

PERIOD = 0.05

_PINGER = r"""
import http.client, json, sys, threading, time
host, port, period = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

def get(scheduled):
    conn = http.client.HTTPConnection(host, port, timeout=120)
    conn.request("GET", "/ping")
    conn.getresponse().read()
    conn.close()
    return time.monotonic() - scheduled

get(time.monotonic())  # connects once before the test starts: the server is up
print("ready", flush=True)
times = []
next_at = time.monotonic()
while not stop.is_set():
    times.append(get(next_at))
    next_at = max(next_at + period, time.monotonic())
    stop.wait(max(0.0, next_at - time.monotonic()))
print(json.dumps(times), flush=True)
"""


class RequestPing:
    """`with RequestPing(host, port) as ping: ...run the test's load...`; then `ping.times`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.times = np.empty(0)

    def __enter__(self) -> "RequestPing":
        self._proc = subprocess.Popen([sys.executable, "-c", _PINGER, self.host, str(self.port), str(PERIOD)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self._proc.stdout.readline().strip() != "ready":
            self._proc.kill()
            raise AssertionError("the request pinger could not reach the test server")
        return self

    def __exit__(self, *exc: object) -> None:
        out, _ = self._proc.communicate(input="", timeout=300)
        self.times = np.array(json.loads(out.splitlines()[-1]))
        assert self.times.size >= 1, "the pinger measured nothing"

    @property
    def worst(self) -> float:
        return float(self.times.max())

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.times, q))

    def __repr__(self) -> str:
        return (f"RequestPing({self.times.size} requests: median {self.quantile(0.5) * 1e3:.1f} ms, "
                f"p90 {self.quantile(0.9) * 1e3:.1f} ms, worst {self.worst * 1e3:.1f} ms)")
