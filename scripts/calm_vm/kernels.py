"""Fetch Debian kernel packages with apt and cache the pieces the guest needs.

WHY apt and not a URL: the machines reach Debian's package registry only through apt, and the
configured sources already name the mirror.  The host's own suite comes from the configured sources;
another suite (trixie for 6.12) is fetched through an extra source that reuses the configured
Debian mirror URI, with its own lists and cache directories so the host's apt state is untouched.

Cache layout (never in git): $CALM_VM_CACHE or ~/.cache/calm-vm
    kernels/<series>/vmlinuz, config, release, layout, modules/<name>.ko, modules.builtin, initramfs-<digest>.cpio
    apt-<suite>/sources.list, lists/, cache/          (extra apt source, only for that download)
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import KERNELS, VmError

# Module paths inside the package that hold virtio and 9p (the calm-vm guest's root), and virtio_net
# with its dependencies (the migration guest that serves HTTP).
MODULE_DIRS = ("drivers/virtio/", "fs/9p/", "fs/netfs/", "fs/fscache/", "net/9p/",
               "drivers/net/virtio_net.", "drivers/net/net_failover.", "net/core/failover.")
# What a cached kernel holds; a cache written under another layout is fetched again (a kernel
# cached before virtio_net was extracted would otherwise never get it).
LAYOUT = "2: virtio, 9p, virtio_net"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True)
class Kernel:
    """A cached, unpacked kernel: what the initramfs builder and qemu need."""

    series: str
    release: str
    root: Path

    @property
    def vmlinuz(self) -> Path:
        return self.root / "vmlinuz"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def modules_dir(self) -> Path:
        return self.root / "modules"

    @property
    def builtin_modules(self) -> set[str]:
        """Names of modules built into the kernel (so not to be loaded)."""
        path = self.root / "modules.builtin"
        if not path.exists():
            return set()
        return {module_name(line.strip()) for line in path.read_text().splitlines() if line.strip()}


def cache_dir() -> Path:
    """The harness cache: $CALM_VM_CACHE, else $XDG_CACHE_HOME/calm-vm, else ~/.cache/calm-vm."""
    if os.environ.get("CALM_VM_CACHE"):
        return Path(os.environ["CALM_VM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "calm-vm"


def module_name(path: str) -> str:
    """kernel/fs/9p/9p.ko.xz -> 9p; dashes and underscores are the same in module names."""
    name = os.path.basename(path)
    name = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", name)
    return name.replace("-", "_")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise fetches of the same kernel by concurrent runs (tests run guests in parallel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def host_codename() -> str:
    """VERSION_CODENAME of the host's Debian (the suite the configured apt sources serve)."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.M)
    return match.group(1) if match else ""


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    if shutil.which(cmd[0]) is None:
        raise VmError(f"{cmd[0]} not found: {what} needs a Debian host with apt")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise VmError(f"{what} failed: {' '.join(cmd[:2])}...: {last[0]}")
    return proc.stdout


def debian_mirror() -> str:
    """The URI of the configured Debian archive (the one serving linux-image-amd64's main suite)."""
    out = _run(["apt-cache", "policy", "linux-image-amd64"], "finding the Debian mirror")
    codename = host_codename()
    for uri, suite in re.findall(r"^\s+\d+\s+(\S+)\s+([\w-]+)/main amd64 Packages", out, re.M):
        if suite == codename:
            return uri
    raise VmError(
        "no configured apt source serves linux-image-amd64 for the host suite "
        f"{codename or '(unknown)'}: run apt-get update, or add the Debian archive to the sources"
    )


def _apt_options(suite: str) -> list[str]:
    """apt -o options selecting the host sources, or an extra source with its own lists dir."""
    if suite == host_codename():
        return []
    root = cache_dir() / f"apt-{suite}"
    for sub in ("lists/partial", "cache/archives/partial"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    sources = root / "sources.list"
    sources.write_text(f"deb [signed-by={KEYRING}] {debian_mirror()} {suite} main\n")
    return [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/nonexistent",
        "-o", f"Dir::State::Lists={root / 'lists'}",
        "-o", f"Dir::Cache={root / 'cache'}",
        "-o", "APT::Sandbox::User=root",
    ]


def _kernel_package(suite: str, options: list[str]) -> str:
    """The versioned package that linux-image-amd64 depends on in that suite."""
    out = _run(["apt-cache", *options, "depends", "linux-image-amd64"], f"apt-cache depends ({suite})")
    match = re.search(r"Depends:\s+(linux-image-\S+)", out)
    if not match:
        raise VmError(f"linux-image-amd64 ({suite}) has no linux-image-* dependency")
    return match.group(1)


def _unpack(deb: Path, dest: Path) -> str:
    """Extract vmlinuz, config, modules.builtin and the virtio/9p modules; return the release."""
    modules = dest / "modules"
    modules.mkdir(parents=True)
    release = ""
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = member.name.lstrip("./")
            boot = re.match(r"boot/(vmlinuz|config)-(.+)$", name)
            mod = re.match(r"(?:usr/)?lib/modules/([^/]+)/(kernel/(.+)|modules\.builtin)$", name)
            if boot:
                target, release = dest / boot.group(1), boot.group(2)
            elif mod and mod.group(2) == "modules.builtin":
                target = dest / "modules.builtin"
            elif mod and mod.group(3).startswith(MODULE_DIRS) and ".ko" in name:
                target = modules / os.path.basename(name)
            else:
                continue
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
    if proc.wait() != 0:
        raise VmError(f"dpkg-deb could not read {deb.name}")
    if not release or not (dest / "vmlinuz").exists():
        raise VmError(f"{deb.name} holds no boot/vmlinuz-*")
    return release


def fetch(series: str) -> Kernel:
    """Return the cached kernel for a series ("6.1" or "6.12"), downloading it on first use."""
    if series not in KERNELS:
        raise VmError(f"unknown kernel {series!r}: choose one of {', '.join(KERNELS)}")
    root = cache_dir() / "kernels" / series
    with _locked(cache_dir() / f"kernels/.{series}.lock"):
        if (root / "release").exists() and _read(root / "layout") == LAYOUT:
            return Kernel(series, (root / "release").read_text().strip(), root)
        suite = KERNELS[series]
        options = _apt_options(suite)
        if options:
            _run(["apt-get", *options, "update"], f"apt-get update for the extra {suite} source")
        package = _kernel_package(suite, options)
        with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
            _run(["apt-get", *options, "download", package], f"apt-get download {package}", cwd=Path(tmp))
            debs = list(Path(tmp).glob("*.deb"))
            if len(debs) != 1:
                raise VmError(f"apt-get download {package} gave {len(debs)} .deb files")
            staging = Path(tmp) / "unpacked"
            release = _unpack(debs[0], staging)
            _check_kernel(series, release, staging / "config")
            (staging / "release").write_text(release + "\n")
            (staging / "layout").write_text(LAYOUT + "\n")
            if root.exists():
                shutil.rmtree(root)
            staging.rename(root)
        return Kernel(series, release, root)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _check_kernel(series: str, release: str, config: Path) -> None:
    """Refuse a kernel that is not the series asked for, or that lacks soft-dirty."""
    if not re.match(re.escape(series) + r"\.", release):
        raise VmError(f"kernel {release} is not a {series} kernel")
    if "CONFIG_MEM_SOFT_DIRTY=y" not in config.read_text():
        raise VmError(f"kernel {release} is built without CONFIG_MEM_SOFT_DIRTY")
