"""What calm needs to know about a HotSpot JVM it records: where the Java heap is (so that `calm
analyze --region-names` can name it), when the JVM collected garbage (its own GC log), and whether
a trace shows a collector's signature.

WHY ask the JVM: the heap is plain anonymous memory in /proc/PID/maps, indistinguishable from
malloc arenas or thread stacks. The JVM knows its layout exactly: `jcmd PID GC.heap_info` prints
the heap's address range for G1, Parallel, Serial, Shenandoah and Epsilon (not ZGC, whose
multi-mapped heap has no single range), and with -XX:NativeMemoryTracking=detail
`jcmd PID VM.native_memory detail` names every range the JVM reserved (heap, GC data structures,
code cache, metaspace, thread stacks).

The GC signature (`gc_signature`): a copying or compacting collector frees whole regions at each
collection and the application then refills them with new objects, so the same heap memory is
rewritten wholesale once per GC cycle. calm measures it on the trace alone: a heap chunk (1 MiB,
G1's region size for small heaps) is *bulk-written* in a sample when at least half its pages are
dirty in that sample, and *rewritten* when that happens on two or more occasions (samples at least
two apart, so a fill split across a sample boundary counts once). With the JVM's GC log the claim
is checked against the collector itself: for G1 a region is refilled only after a pause has freed
it, so between two bulk writes of a chunk there must be a GC pause. A JVM that never collects
(Epsilon GC) writes each chunk once and shows no rewrites: the control.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from calm_search import SearchError, jdk_bin

# a bracketed address list of GC.heap_info: [bottom, (top,)* end)
_RANGE = re.compile(r"\[(0x[0-9a-fA-F]+)((?:,\s*0x[0-9a-fA-F]+)+)\)")
_NMT = re.compile(r"^\[(0x[0-9a-fA-F]+) - (0x[0-9a-fA-F]+)\] reserved(?: and committed)? \d+KB for (.+?) from")
_PAUSE = re.compile(r"\]\[(\d+)ns\].*\bPause\b(.*?)\s([\d.]+)ms\s*$")
CHUNK_BYTES = 1 << 20
FILL = 0.5


@dataclass(frozen=True)
class RegionName:
    pid: int
    start: int
    end: int
    name: str

    def line(self) -> str:
        return f"{self.pid} {self.start:x}-{self.end:x} {self.name}"


def heap_ranges(heap_info: str) -> list[tuple[int, int]]:
    """[start, end) of the Java heap from `jcmd PID GC.heap_info`, adjacent generations merged.

    Only the top-level lines count (indented by at most one space): they span the generations;
    deeper lines are their eden/survivor/object spaces, inside them."""
    ranges = []
    for line in heap_info.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        m = _RANGE.search(line)
        if m and indent <= 1:
            last = m[2].split(",")[-1].strip()
            ranges.append((int(m[1], 16), int(last, 16)))
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged if hi > lo]


def nmt_ranges(detail: str) -> list[tuple[int, int, str]]:
    """(start, end, category) of every reserved range in `jcmd PID VM.native_memory detail`."""
    out = []
    for line in detail.splitlines():
        m = _NMT.match(line.strip())
        if m:
            out.append((int(m[1], 16), int(m[2], 16), m[3]))
    return out


def jcmd(pid: int, *command: str, timeout: float = 120) -> str:
    jdk = jdk_bin()
    if jdk is None:
        raise SearchError("jcmd needs Debian's openjdk-17-jdk-headless (scripts/install-deps)")
    proc = subprocess.run([str(jdk / "jcmd"), str(pid), *command], capture_output=True, text=True, timeout=timeout)
    answer = proc.stdout.split("\n", 1)[-1]  # below the "PID:" line
    if proc.returncode != 0 or answer.lstrip().startswith(("java.lang.", "com.sun.")):
        raise SearchError(f"jcmd {pid} {' '.join(command)} failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return proc.stdout


def region_names(pid: int, nmt: bool = False) -> list[RegionName]:
    """The JVM's own names for its memory: the Java heap, and with `nmt` (the JVM must run with
    -XX:NativeMemoryTracking=detail) every other range it reserved, as "JVM CATEGORY"."""
    names = [RegionName(pid, lo, hi, "Java heap") for lo, hi in heap_ranges(jcmd(pid, "GC.heap_info"))]
    if nmt:
        for lo, hi, category in nmt_ranges(jcmd(pid, "VM.native_memory", "detail")):
            if category != "Java Heap":
                names.append(RegionName(pid, lo, hi, f"JVM {category}"))
    return names


def write_region_names(path: Path, names: list[RegionName]) -> None:
    path.write_text("# pid start-end name (calm analyze --region-names)\n"
                    + "".join(n.line() + "\n" for n in names))


def gc_pauses(gc_log: Path) -> np.ndarray:
    """[start, end] CLOCK_MONOTONIC seconds of every pause in a log written with
    -Xlog:gc:file=...:timenanos,... (HotSpot logs a pause when it ends, with its length)."""
    rows = []
    for line in gc_log.read_text(errors="replace").splitlines():
        m = _PAUSE.search(line)
        if m:
            end = int(m[1]) / 1e9
            rows.append((end - float(m[3]) / 1e3, end))
    return np.array(rows, dtype=float).reshape(-1, 2)


@dataclass
class GcSignature:
    """How much of the heap a trace shows rewritten wholesale, and how that lines up with GC."""

    heap_bytes: int
    samples: int
    chunk_bytes: int
    fill: float
    bulk_written_bytes: int  # heap in chunks bulk-written at least once
    rewritten_bytes: int  # ... on two or more separate occasions
    occasions_median: float  # occasions per rewritten chunk
    rewrite_pairs: int  # consecutive occasions of the same chunk
    pairs_with_pause: int | None  # ... with a GC pause between them (None without a GC log)
    pauses_in_trace: int | None

    @property
    def rewritten_fraction(self) -> float:
        return self.rewritten_bytes / self.bulk_written_bytes if self.bulk_written_bytes else 0.0

    @property
    def pause_fraction(self) -> float | None:
        if self.pairs_with_pause is None or not self.rewrite_pairs:
            return None
        return self.pairs_with_pause / self.rewrite_pairs

    def as_dict(self) -> dict:
        return {**asdict(self), "rewritten_fraction": self.rewritten_fraction, "pause_fraction": self.pause_fraction}

    def describe(self) -> str:
        mib = 1 << 20
        text = (f"{self.rewritten_bytes / mib:.0f} MiB of the {self.heap_bytes / mib:.0f} MiB Java heap rewritten "
                f"in bulk (>= {self.fill:.0%} of a {self.chunk_bytes // 1024} KiB chunk dirty in one sample) on 2 or "
                f"more occasions ({self.rewritten_fraction:.0%} of the {self.bulk_written_bytes / mib:.0f} MiB "
                f"bulk-written; median {self.occasions_median:g} occasions each)")
        if self.pause_fraction is not None:
            text += (f"; {self.pairs_with_pause} of {self.rewrite_pairs} consecutive rewrites of a chunk "
                     f"({self.pause_fraction:.1%}) have a GC pause between them ({self.pauses_in_trace} pauses "
                     f"during the trace)")
        return text

    def is_gc_like(self, min_rewritten: int = 16 << 20, min_fraction: float = 0.5,
                   min_pause_fraction: float = 0.9) -> bool:
        """The criterion of the profile's check: enough heap rewritten in bulk, mostly so, and (with
        a GC log) nearly always across a collection."""
        ok = self.rewritten_bytes >= min_rewritten and self.rewritten_fraction >= min_fraction
        if self.pause_fraction is not None:
            ok = ok and self.pause_fraction >= min_pause_fraction
        return ok


def gc_signature(trace_path: Path, pid: int, heap: list[tuple[int, int]], gc_log: Path | None = None,
                 chunk_bytes: int = CHUNK_BYTES, fill: float = FILL) -> GcSignature:
    """Measures the GC signature of process `pid` over the heap ranges (module docstring).

    One pass over the trace; per sample a bincount of the heap's dirty pages per chunk (no per-page
    Python work), keeping only the (sample, chunk) pairs that were bulk-written."""
    from calm.trace.reader import Trace

    with Trace(trace_path) as trace:
        rows = [p.row for p in trace.processes if p.pid == pid]
        if not rows:
            raise SearchError(f"pid {pid} is not in {trace_path}")
        page = trace.page_size
        per_chunk = chunk_bytes // page
        bases = []  # chunk index offset of each range
        n_chunks = 0
        for lo, hi in heap:
            bases.append((lo // page, (hi - lo) // page // per_chunk, n_chunks))
            n_chunks += (hi - lo) // page // per_chunk
        hits_sample, hits_chunk = [], []
        for sample, by_row in trace.iter_samples():
            vpn = np.unique(np.concatenate([by_row[r] for r in rows if r in by_row] or [np.zeros(0, np.int64)]))
            for first, count, offset in bases:
                rel = vpn.astype(np.int64) - first
                rel = rel[(rel >= 0) & (rel < count * per_chunk)]
                full = np.flatnonzero(np.bincount(rel // per_chunk, minlength=count) >= fill * per_chunk)
                hits_sample.append(np.full(full.size, sample))
                hits_chunk.append(full + offset)
        t_start, t_end = np.array(trace.t_start, float), np.array(trace.t_end, float)
        origin = trace.info.start_monotonic
        samples = trace.n_samples
    sample = np.concatenate(hits_sample) if hits_sample else np.zeros(0, np.int64)
    chunk = np.concatenate(hits_chunk) if hits_chunk else np.zeros(0, np.int64)
    order = np.lexsort((sample, chunk))
    sample, chunk = sample[order], chunk[order]
    # occasions: a bulk write that does not directly follow one of the same chunk in the previous sample
    new = np.ones(sample.size, bool)
    new[1:] = (chunk[1:] != chunk[:-1]) | (sample[1:] - sample[:-1] >= 2)
    sample, chunk = sample[new], chunk[new]
    occasions = np.bincount(chunk, minlength=n_chunks) if chunk.size else np.zeros(n_chunks, np.int64)
    pair = np.flatnonzero(chunk[1:] == chunk[:-1])  # (pair -> pair + 1) consecutive occasions
    pauses = gc_pauses(gc_log) - origin if gc_log is not None else None
    with_pause = in_trace = None
    if pauses is not None:
        a_start, b_end = t_start[sample[pair]], t_end[sample[pair + 1]]
        # a pause overlaps (a_start, b_end): it starts before b_end and ends after a_start
        starts, ends = np.sort(pauses[:, 0]), np.sort(pauses[:, 1])
        with_pause = int(np.count_nonzero(np.searchsorted(starts, b_end) - np.searchsorted(ends, a_start, side="right") > 0))
        in_trace = int(np.count_nonzero((pauses[:, 1] > t_start[0]) & (pauses[:, 0] < t_end[-1])))
    rewritten = occasions >= 2
    return GcSignature(
        heap_bytes=sum(hi - lo for lo, hi in heap), samples=samples, chunk_bytes=chunk_bytes, fill=fill,
        bulk_written_bytes=int(np.count_nonzero(occasions)) * chunk_bytes,
        rewritten_bytes=int(np.count_nonzero(rewritten)) * chunk_bytes,
        occasions_median=float(np.median(occasions[rewritten])) if rewritten.any() else 0.0,
        rewrite_pairs=int(pair.size), pairs_with_pause=with_pause, pauses_in_trace=in_trace)
