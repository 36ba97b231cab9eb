"""The trace corpus of issue 14's deciding benchmark: recordings of real programs and synthetic
traces of the shapes that break migration policies, built into a directory and cached there.

Why a manifest (corpus.json) beside the traces: a recording takes half a minute and cannot be
reproduced bit for bit, so a rerun reuses what was built unless the spec of a trace changed or
--rebuild asks; and the manifest keeps what a reader of the table must know about each trace (how
it was made, which backend recorded it, which half of the train/test split it is in, what its
start-up skip is). Recordings use `calm record --backend auto`: soft-dirty where the kernel has it,
the hash backend otherwise (the backend that ran is read back from the trace).

The synthetic traces reuse scripts/compare_calm_synthetic.py's shapes and
calm.workloads.synthetic's writer (the real TraceWriter), adding a phase change, a moving hot
set, bursts and GC-like sweeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from compare_calm_synthetic import RAMP, TRACES as COMPARE_TRACES  # noqa: E402

from calm.core.paths import write_private  # noqa: E402
from calm.core.ready import NotReady, wait_for  # noqa: E402

SYNTH_PAGES, SYNTH_STEP = 65536, 0.1
SMALL_PAGES, SMALL_SAMPLES = 4096, 120


def _phases(seconds: float, *profiles: str) -> str:
    return f"phases:{seconds:g}:" + "/".join(profiles)


# name: (profile, samples, half). The half is fixed by name, so a reader can check the split.
SYNTHETIC: dict[str, tuple[str, int, str]] = {
    # a hot set above every link's rate (32 Ki pages at 0.5: 5.4 Gbit/s of writes)
    "hotset-above-link": (COMPARE_TRACES["hotcold-0.5-0.5"][0], 200, "train"),
    "hotcold-0.1-0.5": (COMPARE_TRACES["hotcold-0.1-0.5"][0], 200, "test"),
    "ramp-looped": (RAMP, 300, "train"),
    "ramp-60s": (*COMPARE_TRACES["ramp-60s"], "test"),
    # the service's pattern changes every 8 s: a hot database phase, then a quiet scan phase
    "phase-change": (_phases(8, "hotcold:0.05:0.5:0.0005", "uniform:0.002"), 320, "train"),
    # the same size of hot set, redrawn every 5 s (each hotcold phase draws its own pages)
    "hot-set-moves": (_phases(5, *["hotcold:0.08:0.6:0.0002"] * 4), 400, "test"),
    # 2 s bursts of uniform writing every 10 s over a quiet service
    "bursts": (_phases(2, *["hotcold:0.02:0.3:0.0001"] * 4, "uniform:0.05"), 300, "train"),
    # a GC-like sweep: every 4 s, half a second writes most of the heap
    "gc-sweeps": (_phases(0.5, *["hotcold:0.05:0.3:0.0"] * 7, "uniform:0.6"), 300, "test"),
}


@dataclass
class Recording:
    """A real program recorded with `calm record`; `run(out)` records it into `out`."""

    half: str
    seconds: float
    interval: float
    skip: float  # start-up the replay leaves out (a fill a looped replay would repeat every loop)
    describe: str
    run: Callable[[Path, "Recording"], None] = field(repr=False)


def _calm_record(out: Path, rec: Recording, *target: str, children: bool = False,
                 ready: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "calm", "record", "--backend", "auto", "-i", f"{rec.interval}s", "-d",
           f"{rec.seconds}s", "-q", "-f", "-o", str(out)] + (["--children"] if children else [])
    cmd += ["--ready-file", str(ready)] if ready else []
    return subprocess.Popen(cmd + list(target), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, what: str) -> None:
    _, err = proc.communicate(timeout=600)
    if proc.returncode:
        raise RuntimeError(f"calm record of {what} exited {proc.returncode}: {err.strip()[-300:]}")


def _wait_ready(ready: Path, proc: subprocess.Popen, what: str) -> None:
    """The recorder's own handshake: its ready file appears once the first sample is on disk."""
    try:
        wait_for(ready, proc, f"calm record of {what}")
    except NotReady as exc:
        raise RuntimeError(f"{exc}: {proc.communicate()[1].strip()[-300:]}") from None


def record_sqlite(out: Path, rec: Recording) -> None:
    proc = _calm_record(out, rec, "--", sys.executable, str(REPO / "scripts" / "sqlite_fill_update.py"),
                        "--seconds", str(rec.seconds + 30))
    _finish(proc, "sqlite")


def record_groundtruth(out: Path, rec: Recording) -> None:
    proc = _calm_record(out, rec, "--", sys.executable, "-m", "calm.workloads.groundtruth", "--workers", "3",
                        "--pages", "8192", "--profile", "zipf:1.1:0.9", "--duration", str(rec.seconds + 30),
                        children=True)
    _finish(proc, "the ground-truth service")


def record_apache(out: Path, rec: Recording) -> None:
    """Apache (calm's configuration) under Poisson load from `calm load`, 128 KiB and 16 KiB pages."""
    from calm_apache import Apache

    with tempfile.TemporaryDirectory(prefix="calm-corpus-") as tmp, Apache() as httpd:
        ready = Path(tmp) / "ready"
        proc = _calm_record(out, rec, "--pid", str(httpd.pid), children=True, ready=ready)
        _wait_ready(ready, proc, "apache")
        load = subprocess.run([sys.executable, "-m", "calm", "load", httpd.url("/blob-128k.bin"),
                               httpd.url("/page-16k.html"), httpd.url("/"), "--rate", "40", "--duration",
                               f"{rec.seconds}s", "--seed", "1"], capture_output=True, text=True)
        _finish(proc, "apache")
        if load.returncode:
            raise RuntimeError(f"calm load failed: {load.stderr.strip()[-300:]}")


def record_redis(out: Path, rec: Recording) -> None:
    """Redis filled with 300k keys, then recorded under redis-benchmark SETs over that keyspace."""
    from calm_services import Redis

    with tempfile.TemporaryDirectory(prefix="calm-corpus-") as tmp, Redis() as redis:
        bench = ["redis-benchmark", "-s", str(redis.socket), "-t", "set", "-c", "4", "-r", "300000", "-d", "100",
                 "-q"]
        subprocess.run(bench + ["-n", "300000"], capture_output=True, check=True)
        ready = Path(tmp) / "ready"
        proc = _calm_record(out, rec, "--pid", str(redis.pid), children=True, ready=ready)
        _wait_ready(ready, proc, "redis")
        load = subprocess.Popen(bench + ["-n", "100000000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _finish(proc, "redis")
        finally:
            load.send_signal(signal.SIGINT)
            load.wait(30)


def record_postgres(out: Path, rec: Recording) -> None:
    """PostgreSQL 128 MB shared_buffers, pgbench scale 10, recorded (postmaster and every backend:
    shared_buffers is one memory) under `pgbench -c 4 -j 2` for the whole recording."""
    from calm_services import Postgres

    with tempfile.TemporaryDirectory(prefix="calm-corpus-") as tmp, Postgres(shared_buffers="128MB") as pg:
        pg.pgbench_init(10)
        ready = Path(tmp) / "ready"
        proc = _calm_record(out, rec, "--pid", str(pg.pid), children=True, ready=ready)
        _wait_ready(ready, proc, "postgres")
        load = pg.client_popen("pgbench", "-c", "4", "-j", "2", "-T", str(int(rec.seconds + 30)), "postgres",
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _finish(proc, "postgres")
        finally:
            load.send_signal(signal.SIGINT)
            try:
                load.wait(30)
            except subprocess.TimeoutExpired:
                load.kill()
                load.wait()


RECORDINGS: dict[str, Recording] = {
    "sqlite": Recording("train", 25, 0.2, 6.0, "scripts/sqlite_fill_update.py (fill 400k rows, then updates)",
                        record_sqlite),
    "groundtruth-workers": Recording(
        "test", 20, 0.1, 0.5, "python -m calm.workloads.groundtruth --workers 3 --pages 8192 --profile zipf:1.1:0.9",
        record_groundtruth),
    "apache": Recording("train", 20, 0.1, 0.0, "Apache httpd (scripts/calm_apache.py) under calm load at 40 req/s",
                        record_apache),
    "redis": Recording("test", 20, 0.2, 0.0, "redis-server, 300k keys, redis-benchmark SET -c 4 over them",
                       record_redis),
    "postgres": Recording("train", 20, 0.2, 0.0, "PostgreSQL 15, shared_buffers 128MB, pgbench -s 10 -c 4 -j 2",
                          record_postgres),
}


@dataclass
class CorpusTrace:
    name: str
    path: str
    kind: str  # "recorded" or "synthetic"
    half: str  # "train" or "test"
    skip_seconds: float
    source: str
    spec: dict  # what built it: a change rebuilds the trace
    backend: str = ""
    error: str = ""  # why it is not in the corpus (a recording that could not run here)


def _synthetic_spec(profile: str, samples: int, small: bool) -> dict:
    return {"profile": profile, "samples": min(samples, SMALL_SAMPLES) if small else samples,
            "pages": SMALL_PAGES if small else SYNTH_PAGES, "interval": SYNTH_STEP, "seed": 0}


def _backend(path: Path) -> str:
    from calm.trace.reader import Trace

    with Trace(path) as t:
        return t.info.backend


def build_corpus(folder: Path, *, synthetic_only: bool = False, small: bool = False, rebuild: bool = False,
                 only: set[str] | None = None, note: Callable[[str], None] = print) -> list[CorpusTrace]:
    """Builds (or reuses) every trace (or those named in `only`); a recording that fails is kept
    with its `error`, so the table says why it is missing."""
    from calm.workloads.synthetic import write_profile_trace

    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "corpus.json"
    cached = {t["name"]: t for t in json.loads(manifest_path.read_text())} if manifest_path.exists() else {}
    out: list[CorpusTrace] = []

    def keep(trace: CorpusTrace) -> None:  # the manifest after each trace: an interrupted build keeps what it made
        out.append(trace)
        rest = [t for name, t in cached.items() if name not in {o.name for o in out}]
        write_private(manifest_path, json.dumps([asdict(t) for t in out] + rest, indent=1), force=True)

    def reuse(name: str, spec: dict) -> CorpusTrace | None:
        old = cached.get(name)
        if rebuild or not old or old["spec"] != spec or old["error"] or not Path(old["path"]).exists():
            return None
        return CorpusTrace(**old)

    for name, (profile, samples, half) in SYNTHETIC.items():
        if only is not None and name not in only:
            continue
        spec = _synthetic_spec(profile, samples, small)
        trace = reuse(name, spec)
        if trace is None:
            path = folder / f"{name}.h5"
            note(f"writing synthetic {name} ({spec['pages']} pages x {spec['samples']} samples)")
            write_profile_trace(path, pages=spec["pages"], samples=spec["samples"], interval=spec["interval"],
                                profile=profile, seed=spec["seed"])
            trace = CorpusTrace(name, str(path), "synthetic", half, 0.0, f"synthetic {profile}", spec,
                                backend="synthetic")
        keep(trace)
    if not synthetic_only:
        for name, rec in RECORDINGS.items():
            if only is not None and name not in only:
                continue
            spec = {"describe": rec.describe, "seconds": rec.seconds, "interval": rec.interval}
            trace = reuse(name, spec)
            if trace is not None:  # the skip is the replay's, not the recording's: no need to re-record
                trace.skip_seconds = rec.skip
            if trace is None:
                path = folder / f"{name}.h5"
                note(f"recording {name} for {rec.seconds:g} s: {rec.describe}")
                trace = CorpusTrace(name, str(path), "recorded", rec.half, rec.skip, rec.describe, spec)
                try:
                    rec.run(path, rec)
                    trace.backend = _backend(path)
                except Exception as exc:  # noqa: BLE001 (a server missing here is reported, the rest runs)
                    trace.error = f"{type(exc).__name__}: {exc}"
                    note(f"  {name} not recorded: {trace.error}")
            keep(trace)
    return out


def measured_cost_csv(folder: Path, given: str | None, *, rebuild: bool = False,
                      note: Callable[[str], None] = print) -> tuple[str | None, str]:
    """(path of a `bandwidth,probability` CSV, where it came from) or (None, why there is none).

    Without --cost-csv, measures Apache's curve once with short (8 s) steps and caches it; a curve
    is never invented when the measurement cannot run here."""
    if given:
        return given, f"given: {given}"
    out = folder / "cost-curve"
    csv_path = out / "cost.csv"
    if csv_path.exists() and not rebuild:
        return str(csv_path), f"cached Apache curve ({csv_path}, measure-cost-curve --duration 8s)"
    note("measuring Apache's cost curve (scripts/measure-cost-curve --duration 8s), about 2 minutes")
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "measure-cost-curve"), "-o", str(out),
                          "--duration", "8s", "--no-plot"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    if run.returncode or not csv_path.exists():
        return None, f"no measured curve: measure-cost-curve failed ({run.stderr.strip().splitlines()[-1:]})"
    return str(csv_path), f"measured here now ({csv_path}, measure-cost-curve --duration 8s)"
