"""Where `calm load` may send traffic: loopback, or a veth inside a network namespace that calm's
own scripts made (`calm-*`, holding only lo and veth interfaces and no default route). Host names
other than `localhost` are refused without a DNS lookup (see the package docstring)."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from calm.core.errors import CalmError

NETNS_PREFIX = "calm-"  # network namespaces made by calm's scripts carry this name prefix
NETNS_DIR = Path("/run/netns")


# --- target ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    url: str
    address: str  # IP literal the connection goes to
    port: int
    path: str  # request target, with query
    host_header: str


def parse_targets(urls: Iterable[str]) -> list[Target]:
    """parse_target of every URL, checking each distinct address once: a query log holds thousands
    of URLs to one address, and outside loopback the check runs `ip` three times."""
    targets = [parse_target(url, check=False) for url in urls]
    for address in dict.fromkeys(t.address for t in targets):
        check_address_allowed(address)
    return targets


def parse_target(url: str, check: bool = True) -> Target:
    """Parses an http:// URL and checks that its address is one calm may send to (module doc)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise CalmError(f"URL '{url}' must start with http:// (calm load speaks plain HTTP only)")
    try:
        host, port = parts.hostname, parts.port or 80
    except ValueError as exc:
        raise CalmError(f"URL '{url}': {exc}") from None
    if not host:
        raise CalmError(f"URL '{url}' has no host")
    if host == "localhost" or host.endswith(".localhost"):
        address = "127.0.0.1"
    else:
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            raise CalmError(f"host '{host}' is not an IP address: calm load only sends to loopback "
                            f"(127.0.0.0/8, ::1, localhost) or to a calm-made network namespace, "
                            f"and does no DNS lookups") from None
    if check:
        check_address_allowed(address)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    return Target(url, address, port, path, host_header)


def check_address_allowed(address: str) -> None:
    """Loopback always; otherwise only a directly connected veth address inside a calm netns."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    if ip.is_loopback or (mapped is not None and mapped.is_loopback):
        return
    netns = current_calm_netns()
    if netns is None:
        raise CalmError(f"refusing to send to {address}: not a loopback address, and calm load is not "
                        f"running inside a network namespace made by calm (named {NETNS_PREFIX}*)")
    links = _links_here()
    others = [name for name, (kind, _) in links.items() if name != "lo" and kind != "veth"]
    if others:
        raise CalmError(f"refusing to send to {address}: network namespace {netns} has non-veth "
                        f"interfaces ({', '.join(sorted(others))}), so it is not isolated")
    if _has_default_route():
        raise CalmError(f"refusing to send to {address}: network namespace {netns} has a default route")
    for name, (kind, networks) in links.items():
        if kind == "veth" and any(ip in net for net in networks):
            return
    raise CalmError(f"refusing to send to {address}: it is not on a veth subnet of network namespace {netns}")


def current_calm_netns() -> str | None:
    """The name of the calm-made named netns this process runs in, or None."""
    try:
        here = os.stat("/proc/self/ns/net")
        names = sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NETNS_PREFIX))
    except OSError:
        return None
    for name in names:
        try:
            st = os.stat(NETNS_DIR / name)
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (here.st_ino, here.st_dev):
            return name
    return None


def _ip_json(*args: str) -> list[dict]:
    try:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CalmError(f"cannot inspect this network namespace with `ip -j {' '.join(args)}`: {exc}") from None
    return json.loads(out.stdout or "[]")


def _links_here() -> dict[str, tuple[str, list]]:
    """Interface name -> (link kind, its connected networks) in the current netns."""
    links = {}
    for link in _ip_json("-d", "addr", "show"):
        kind = link.get("linkinfo", {}).get("info_kind", "")
        nets = [ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False)
                for a in link.get("addr_info", []) if "local" in a]
        links[link["ifname"]] = (kind, nets)
    return links


def _has_default_route() -> bool:
    return bool(_ip_json("route", "show", "default")) or bool(_ip_json("-6", "route", "show", "default"))


