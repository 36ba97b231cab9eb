"""The validation grid: workloads x max-bandwidth x downtime-limit, each cell repeated, one run at a
time (TCG guests on a shared 2-core machine: a second pair would slow the first).

Results go to OUT/<workload>/<bandwidth>Mbit-<downtime>ms/<repeat>/run.json as each run ends; a
grid started again with the same OUT skips the runs already there, so a long grid survives an
interruption. The link speed is measured once per grid (run.measure_link) and kept in
OUT/link.json (the median of three measurements).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from calm_vm.kernels import fetch

from . import MigrationError
from .guest import Workload, build_initramfs
from .qemu_binary import Qemu
from .run import LINK_METHOD, RunSpec, measure_link, run

# The guest workloads (256 MiB guest): dirty rates between the smallest and the largest
# bandwidth, so that some cells converge in a few passes and some never do.
WORKLOADS = {
    "uniform": Workload("uniform", 64, 2000, "uniform"),  # 8 MB/s over 64 MiB
    "hotcold": Workload("hotcold", 96, 3000, "hotcold:0.1:0.9"),  # 90% of writes on 9.6 MiB
    "phases": Workload("phases", 64, 4000, "phases:5:0.0625"),  # 5 s busy, 5 s quiet on 4 MiB
}
BANDWIDTHS_MBIT = (50, 100, 200, 400)
DOWNTIMES_MS = (100, 300, 1000)
LINK_MEASUREMENTS = 3


@dataclass
class GridSpec:
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    bandwidths_mbit: tuple[float, ...] = BANDWIDTHS_MBIT
    downtimes_ms: tuple[int, ...] = DOWNTIMES_MS
    repeats: int = 2
    record_s: float = 20.0
    interval_s: float = 0.5
    calc_times_s: tuple[int, ...] = (1, 2, 4, 8)
    deadline_s: float = 120.0
    memory_mib: int = 256
    kernel: str = "6.12"


def run_dir(out: Path, workload: str, bandwidth_mbit: float, downtime_ms: int, repeat: int) -> Path:
    return out / workload / f"{bandwidth_mbit:g}Mbit-{downtime_ms}ms" / str(repeat)


def kept_link(out: Path) -> dict | None:
    """OUT/link.json (link_bit_s, measurements_bit_s, method, measured), or None before the first
    measurement; a file from before the method was recorded is a whole-migration one."""
    path = out / "link.json"
    if not path.exists():
        return None
    return {"method": "whole-migration", **json.loads(path.read_text())}


def link_speed(out: Path, qemu: Qemu, kernel, initrd: Path, memory_mib: int, log=print) -> float:
    """The grid's link speed: OUT/link.json when it holds a measurement by the current method (an
    older one is kept beside it as link-<method>.json and measured again)."""
    path = out / "link.json"
    kept = kept_link(out)
    if kept is not None:
        method = kept["method"]
        if method == LINK_METHOD:
            return float(kept["link_bit_s"])
        path.replace(out / f"link-{method}.json")
    log(f"measuring the localhost link ({LINK_MEASUREMENTS} stop-and-copies of a paused guest full of data)")
    speeds = [measure_link(qemu, kernel, initrd, memory_mib) for _ in range(LINK_MEASUREMENTS)]
    speed = statistics.median(speeds)  # the machine is shared: one measurement can land on a busy moment
    path.write_text(json.dumps({"link_bit_s": speed, "measurements_bit_s": speeds, "method": LINK_METHOD,
                                "measured": time.strftime("%Y-%m-%d %H:%M:%S")}))
    log(f"link: {speed / 1e9:.2f} Gbit/s (median of {', '.join(f'{s / 1e9:.2f}' for s in speeds)})")
    return speed


def run_grid(grid: GridSpec, qemu: Qemu, out: Path, log=print) -> list[Path]:
    """Runs every missing run of the grid; returns the run directories that hold a result.
    Repeats are the outer loop, so an interrupted grid has the whole grid once before twice."""
    for name in grid.workloads:
        if name not in WORKLOADS:
            raise MigrationError(f"unknown workload {name!r}: choose from {', '.join(WORKLOADS)}")
    out.mkdir(parents=True, exist_ok=True)
    kernel = fetch(grid.kernel)
    initrd = build_initramfs()
    link = link_speed(out, qemu, kernel, initrd, grid.memory_mib, log)
    done = []
    for repeat in range(grid.repeats):
        for name in grid.workloads:
            for bandwidth in grid.bandwidths_mbit:
                for downtime in grid.downtimes_ms:
                    where = run_dir(out, name, bandwidth, downtime, repeat)
                    if not (where / "run.json").exists():
                        spec = RunSpec(WORKLOADS[name], bandwidth * 1e6, downtime, link,
                                       memory_mib=grid.memory_mib, record_s=grid.record_s,
                                       interval_s=grid.interval_s, calc_times_s=grid.calc_times_s,
                                       deadline_s=grid.deadline_s, repeat=repeat)
                        try:
                            result = run(spec, qemu, kernel, initrd, where, log)
                        except Exception as exc:  # one failed run must not end a grid of hours
                            if isinstance(exc, KeyboardInterrupt):
                                raise
                            what = str(exc) if isinstance(exc, MigrationError) else repr(exc)
                            log(f"  {spec.cell} #{repeat}: FAILED: {what}")
                            (where / "error.txt").write_text(what + "\n")
                            continue
                        real = result.real
                        log(f"  {spec.cell} #{repeat}: real {real['status']} {real['total_time_ms'] / 1000:.1f} s, "
                            f"calm {result.calm['total_time_s']:.1f} s, "
                            f"calc-dirty-rate {result.qemu_predictor['total_time_s']:.1f} s")
                    done.append(where)
    return done
