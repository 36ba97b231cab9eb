"""One validation run: a real QEMU live migration of a guest, and the two predictions of it.

1. Boot a source guest and a destination (`-incoming defer`, same command line) under TCG; wait
   for the workload's "ready" line on the source console.
2. Record the source QEMU from the host for `record_s`: `calm record --pid <qemu> --region
   memfd:memory-backend-memfd` (only the guest RAM, not QEMU's own heap).
3. Measure with QEMU's own tool: calc-dirty-rate (page sampling) at several calc-times, and the
   share of zero pages over a sample of the guest RAM (see predictor.py).
4. Migrate for real: migrate-set-parameters max-bandwidth and downtime-limit, migrate to the
   destination over tcp:127.0.0.1, poll query-migrate until it completes (or cancel it past the
   deadline: it did not converge), then wait for the migrated guest's next heartbeat at the
   destination, which shows it runs on.
5. Predict the same migration twice: `calm replay TRACE -s trace@LINK -a qemu` with the same
   max-bandwidth and downtime-limit, and QEMU's predictor method on the calc-dirty-rate curve.

Everything measured goes into run.json next to the trace, the consoles and QEMU's logs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from calm.qemu import migration
from calm.qemu.qmp import Monitor
from calm_vm.kernels import Kernel

from . import MigrationError, predictor
from .guest import RAM_REGION, Guest, Workload, workdir
from .qemu_binary import Qemu

BEAT = re.compile(r"calm-guest-workload: beat t=([\d.]+) writes=(\d+)")


@dataclass
class RunSpec:
    """One migration: the guest, QEMU's two parameters, and how the predictors are fed."""

    workload: Workload
    bandwidth_bit_s: float  # max-bandwidth, bits/s (QEMU is given bytes/s: this / 8)
    downtime_ms: int  # downtime-limit
    link_bit_s: float  # the localhost link's speed for the replay's final copy (measured)
    memory_mib: int = 256
    record_s: float = 20.0
    interval_s: float = 0.5
    calc_times_s: tuple[int, ...] = (1, 2, 4, 8)
    sample_pages: int = 8192  # per GiB, for calc-dirty-rate and the zero-page sample
    deadline_s: float = 150.0  # a migration still running then is cancelled: it did not converge
    repeat: int = 0

    @property
    def cell(self) -> str:
        return f"{self.workload.name}/{self.bandwidth_bit_s / 1e6:g}Mbit/{self.downtime_ms}ms"


@dataclass
class RunResult:
    spec: dict
    real: dict = field(default_factory=dict)
    calm: dict = field(default_factory=dict)
    qemu_predictor: dict = field(default_factory=dict)
    recording: dict = field(default_factory=dict)
    workload_rate: dict = field(default_factory=dict)
    seconds: float = 0.0


def _calm(*args: str, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "calm", *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise MigrationError(f"calm {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return proc


def _ram_mapping(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            if RAM_REGION in line:
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                return lo, hi - lo
    raise MigrationError(f"QEMU {pid} has no {RAM_REGION} mapping (was it started with memory-backend-memfd?)")


def _beats(text: str) -> list[tuple[float, int]]:
    return [(float(t), int(w)) for t, w in BEAT.findall(text)]


def _rate(beats: list[tuple[float, int]]) -> float:
    """Writes per second between the first and the last heartbeat."""
    if len(beats) < 2 or beats[-1][0] <= beats[0][0]:
        return float("nan")
    return (beats[-1][1] - beats[0][1]) / (beats[-1][0] - beats[0][0])


def migrate_and_measure(spec: RunSpec, qemu: Qemu, kernel: Kernel, initrd: Path, out: Path,
                        log=print) -> RunResult:
    """Steps 1-4 (the real migration and the measurements that feed the predictors)."""
    out.mkdir(parents=True, exist_ok=True)
    result = RunResult(spec={**asdict(spec), "workload": asdict(spec.workload), "cell": spec.cell,
                             "qemu_version": qemu.version_text, "kernel": kernel.release})
    began = time.monotonic()
    sockets = workdir("calm-migration-vm-")
    source = destination = None
    try:
        source = Guest(qemu, kernel, initrd, spec.workload, sockets, "source", memory_mib=spec.memory_mib)
        destination = Guest(qemu, kernel, initrd, spec.workload, sockets, "destination",
                            memory_mib=spec.memory_mib, incoming=True)
        source.wait_for_socket()
        destination.wait_for_socket()
        source.wait_for_line(r"calm-guest-workload: ready", timeout=600)
        with Monitor(str(source.qmp_socket), name="source") as src, \
                Monitor(str(destination.qmp_socket), name="destination") as dst:
            uri = migration.listen(dst)
            log(f"  {spec.cell} #{spec.repeat}: recording the source for {spec.record_s:g} s")
            mark = len(source.console_text())
            trace = out / "trace.h5"
            rec = _calm("record", "--pid", str(source.pid), "--region", RAM_REGION, "-i", f"{spec.interval_s}s",
                        "-d", f"{spec.record_s}s", "-o", str(trace), "-f", "-q", "--json",
                        timeout=spec.record_s + 300)
            result.recording = json.loads(rec.stdout)
            result.workload_rate["recording"] = _rate(_beats(source.console_text()[mark:]))

            log(f"  {spec.cell} #{spec.repeat}: calc-dirty-rate at {', '.join(map(str, spec.calc_times_s))} s")
            rates = [migration.calc_dirty_rate(src, t, sample_pages=spec.sample_pages) for t in spec.calc_times_s]
            start, length = _ram_mapping(source.pid)
            samples = max(2, spec.sample_pages * length // (1 << 30))
            zero_fraction = predictor.sample_zero_fraction(source.pid, start, length, samples, seed=spec.repeat)
            result.qemu_predictor["dirty_rates_mib_s"] = [(r.calc_time_s, r.dirty_rate_mib_s) for r in rates]
            result.qemu_predictor["zero_fraction"] = zero_fraction
            result.qemu_predictor["sampled_pages"] = samples

            log(f"  {spec.cell} #{spec.repeat}: migrating")
            mark = len(source.console_text())
            migration.set_parameters(src, max_bandwidth=round(spec.bandwidth_bit_s / 8),
                                     downtime_limit_ms=spec.downtime_ms)
            timeline: list[dict] = []
            t0 = time.monotonic()

            def keep(status: migration.MigrationStatus) -> None:
                timeline.append({"t": round(time.monotonic() - t0, 3), "status": status.status,
                                 "transferred": status.transferred, "remaining": status.remaining,
                                 "syncs": status.dirty_sync_count})

            migration.start(src, uri)
            final = migration.wait(src, deadline_s=spec.deadline_s, on_status=keep)
            result.workload_rate["migration"] = _rate(_beats(source.console_text()[mark:]))
            result.real = {**final.as_dict(), "converged": final.status == "completed", "timeline": timeline}
            if final.status == "completed":
                dst_mark = len(destination.console_text())
                destination.wait_for_line(BEAT.pattern, after=dst_mark, timeout=120)
                result.real["destination_ran_on"] = True
            elif final.status == "failed":
                raise MigrationError(f"the migration failed: {final.error or '(QEMU gave no reason)'}")
    finally:
        for guest in (source, destination):
            if guest is not None:
                guest.stop()
        for name in ("source-console.log", "destination-console.log", "source-qemu.log", "destination-qemu.log"):
            if (sockets / name).exists():
                shutil.copy(sockets / name, out / name)
        shutil.rmtree(sockets, ignore_errors=True)
    result.seconds = time.monotonic() - began
    return result


def predict(result: RunResult, spec: RunSpec, out: Path) -> None:
    """Step 5: calm's replay of the trace, and QEMU's predictor method, for the same parameters."""
    replay = _calm("replay", str(out / "trace.h5"), "-s", f"trace@{spec.link_bit_s:.0f}bit", "-a", "qemu",
                   "--qemu-max-bandwidth", f"{spec.bandwidth_bit_s:.0f}bit",
                   "--qemu-downtime-limit", f"{spec.downtime_ms}ms", "--max-time", f"{spec.deadline_s:g}s",
                   "--json", "--no-plots", "-f", "-q", "-o", str(out / "replay"), timeout=1800)
    row = json.loads(replay.stdout)[0]
    result.calm = {"converges": not row["forced"], "total_time_s": row["total_time_s"],
                   "downtime_s": row["downtime_s"], "bytes": row["bytes_sent"], "syncs": row["syncs"],
                   "normal_pages": row["normal_pages"], "zero_pages": row["zero_pages"],
                   "stop_reason": row["stop_reason"]}
    total_pages = spec.memory_mib * (1 << 20) // predictor.PAGE_SIZE
    zero = result.qemu_predictor["zero_fraction"] * total_pages
    curve = predictor.build_curve(predictor.dirty_points(result.qemu_predictor["dirty_rates_mib_s"]),
                                  total_pages, zero)
    prediction = predictor.predict(curve, total_pages, zero, spec.bandwidth_bit_s / 8, spec.downtime_ms,
                                   spec.deadline_s)
    result.qemu_predictor.update(prediction.as_dict())


def repredict(out: Path, link_bit_s: float | None = None) -> RunResult:
    """Step 5 again for a finished run (its trace and QEMU's measurements are kept), e.g. after the
    simulator changed or the link was measured again (`link_bit_s`, then kept in the run's spec);
    run.json is rewritten with the new predictions."""
    data = json.loads((out / "run.json").read_text())
    if link_bit_s is not None:
        data["spec"]["link_bit_s"] = link_bit_s
    spec_fields = {k: v for k, v in data["spec"].items() if k in RunSpec.__dataclass_fields__}
    spec_fields["workload"] = Workload(**data["spec"]["workload"])
    spec_fields["calc_times_s"] = tuple(spec_fields["calc_times_s"])
    spec = RunSpec(**spec_fields)
    kept = {k: data["qemu_predictor"][k] for k in ("dirty_rates_mib_s", "zero_fraction", "sampled_pages")}
    result = RunResult(spec=data["spec"], real=data["real"], qemu_predictor=kept, recording=data["recording"],
                       workload_rate=data["workload_rate"], seconds=data["seconds"])
    predict(result, spec, out)
    (out / "run.json").write_text(json.dumps(asdict(result), indent=1, default=float))
    return result


def run(spec: RunSpec, qemu: Qemu, kernel: Kernel, initrd: Path, out: Path, log=print) -> RunResult:
    result = migrate_and_measure(spec, qemu, kernel, initrd, out, log)
    predict(result, spec, out)
    (out / "run.json").write_text(json.dumps(asdict(result), indent=1, default=float))
    return result


# The link measurement's throttle before the switch-over, and a downtime limit whose threshold
# (throttle x limit = 1 GB) exceeds any guest RAM measured here: QEMU switches over at its first
# check with almost all of RAM still to send, and the stop-and-copy sends it at full speed.
LINK_THROTTLE_BYTES_S = 10_000_000
LINK_DOWNTIME_LIMIT_MS = 100_000
LINK_METHOD = "stop-and-copy"


def measure_link(qemu: Qemu, kernel: Kernel, initrd: Path, memory_mib: int = 256) -> float:
    """The speed of QEMU's stop-and-copy over the localhost link (bits/s), which the replay uses
    for its final copy (QEMU sends it without max-bandwidth's throttle), timed on the
    stop-and-copy itself: a paused guest whose RAM is mostly non-zero data is migrated with a
    slow throttle and a huge downtime limit, so QEMU switches over after its first 100 ms window
    and sends nearly all of RAM in its final copy; the bytes sent after the last poll before the
    switch-over, over QEMU's own downtime, are the speed.

    Why not the throughput of a whole unthrottled migration (this harness's first method, 2.0
    Gbit/s here on 2026-12-02): that also times QEMU's setup, its passes' bitmap scans and the
    page-by-page rate accounting, which the stop-and-copy skips, and a real switch-over was seen
    sending ~10 MB in 10 ms. A paused guest, because the vCPUs are stopped in the stop-and-copy
    too (a running TCG vCPU competes with the migration thread for the host's cores); non-zero
    data, because zero pages cost QEMU a scan but no bytes."""
    idle = Workload("idle", memory_mib * 5 // 8, 0, "uniform")
    sockets = workdir("calm-migration-link-")
    guests: list[Guest] = []
    polls: list[migration.MigrationStatus] = []
    try:
        guests.append(Guest(qemu, kernel, initrd, idle, sockets, "source", memory_mib=memory_mib))
        guests.append(Guest(qemu, kernel, initrd, idle, sockets, "destination", memory_mib=memory_mib,
                            incoming=True))
        for guest in guests:
            guest.wait_for_socket()
        guests[0].wait_for_line(r"calm-guest-workload: ready", timeout=600)
        with Monitor(str(guests[0].qmp_socket)) as src, Monitor(str(guests[1].qmp_socket)) as dst:
            uri = migration.listen(dst)
            migration.set_parameters(src, max_bandwidth=LINK_THROTTLE_BYTES_S,
                                     downtime_limit_ms=LINK_DOWNTIME_LIMIT_MS)
            src.execute("stop")
            migration.start(src, uri)
            final = migration.wait(src, deadline_s=300, poll_s=0.02, on_status=polls.append)
    finally:
        for guest in guests:
            guest.stop()
        shutil.rmtree(sockets, ignore_errors=True)
    if final.status != "completed" or final.downtime_ms <= 0:
        raise MigrationError(f"the link measurement's migration ended {final.status}")
    before = max((p.transferred for p in polls if p.status == "active"), default=0)
    final_copy = final.transferred - before
    if final_copy < final.total // 4:  # it did not switch over early: the measurement is not of the final copy
        raise MigrationError(f"the link measurement's final copy sent only {final_copy} of {final.total} bytes")
    return final_copy * 8 / (final.downtime_ms / 1000)
