"""A private two-namespace network for measurements: server and client namespaces joined by one veth
pair, with the server's egress (the responses) shaped by a tbf qdisc.

WHY two namespaces rather than one plus the host: traffic then never touches the host's own
interfaces or routes, and `calm load` can verify from inside the client namespace that it is
isolated (only lo and a veth, no default route, named calm-*). Names carry the creating pid, so a
run killed with SIGKILL leaves namespaces that the next run recognises as stale and removes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass

NETNS_PREFIX = "calm-cc-"  # must start with calm.workloads.loadgen.NETNS_PREFIX ("calm-")


class NetnsError(RuntimeError):
    """An `ip`/`tc` command failed; the message names it."""


def sh(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise NetnsError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def remove_stale() -> list[str]:
    """Deletes calm-cc-PID-* namespaces whose creating process is gone; returns their names."""
    removed = []
    for line in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"{NETNS_PREFIX}(\d+)-(srv|cli)", name)
        if m and not os.path.exists(f"/proc/{m[1]}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            removed.append(name)
    return removed


@dataclass
class VethNet:
    """`with VethNet() as net:` server at net.server_ip in net.server_ns, client in net.client_ns."""

    server_ip: str = "10.200.0.1"
    client_ip: str = "10.200.0.2"
    prefixlen: int = 24

    def __post_init__(self) -> None:
        tag = f"{NETNS_PREFIX}{os.getpid()}"
        self.server_ns, self.client_ns = f"{tag}-srv", f"{tag}-cli"
        self.server_dev, self.client_dev = f"cc{os.getpid()}s", f"cc{os.getpid()}c"
        self.created: list[str] = []
        self.gso_max: int | None = None

    def up(self) -> None:
        if os.geteuid() != 0:
            raise NetnsError("network namespaces and tc need root")
        remove_stale()
        for ns in (self.server_ns, self.client_ns):
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", self.server_dev, "netns", self.server_ns, "type", "veth",
           "peer", "name", self.client_dev, "netns", self.client_ns)
        for ns, dev, ip in ((self.server_ns, self.server_dev, self.server_ip),
                            (self.client_ns, self.client_dev, self.client_ip)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/{self.prefixlen}", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def limit_gso(self, max_bytes: int) -> None:
        """Caps the server veth's GSO packets at max_bytes (one frame at 1514), so tbf can shape
        with a bucket of a few frames instead of 64 KiB; needed at rates of a few hundred kbit/s,
        where 64 KiB is seconds of traffic that would pass unshaped. Applies to connections opened
        after the call (TCP reads the limit when a connection starts)."""
        sh("ip", "-n", self.server_ns, "link", "set", "dev", self.server_dev, "gso_max_size", str(max_bytes))
        self.gso_max = max_bytes

    def shape(self, rate_bps: float) -> str:
        """Limits the server's egress to rate_bps with tbf; returns the qdisc as tc shows it.

        burst: 10 ms at the rate but at least two of the largest packets the veth hands over (64 KiB
        GSO segments unless `limit_gso` lowered them), so a packet always fits the bucket (tbf would
        otherwise have to split or drop it); latency 200 ms bounds the queue, past which packets
        drop and TCP backs off, as on a real congested link."""
        floor = 2 * self.gso_max if self.gso_max else 64 * 1024
        burst = max(int(rate_bps / 8 * 0.010), floor)
        sh("tc", "-n", self.server_ns, "qdisc", "replace", "dev", self.server_dev, "root", "tbf",
           "rate", f"{int(rate_bps)}bit", "burst", str(burst), "latency", "200ms")
        return sh("tc", "-n", self.server_ns, "qdisc", "show", "dev", self.server_dev).strip()

    def tx_bytes(self) -> int:
        """Bytes the server's veth has sent (responses with their HTTP, TCP and IP headers)."""
        link = json.loads(sh("ip", "-n", self.server_ns, "-s", "-j", "link", "show", "dev", self.server_dev))
        return int(link[0]["stats64"]["tx"]["bytes"])

    def unshape(self) -> None:
        subprocess.run(["tc", "-n", self.server_ns, "qdisc", "del", "dev", self.server_dev, "root"],
                       capture_output=True)

    def down(self) -> None:
        """Removes the qdisc and both namespaces (which destroys the veth pair); safe to repeat."""
        if self.created:
            self.unshape()
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.created.clear()

    def __enter__(self) -> "VethNet":
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.down()
