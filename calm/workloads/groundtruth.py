"""The ground-truth workload: a process that dirties its memory with known per-page probabilities.

Why it exists: tests, benchmarks and the demo need a target whose true dirtying is known. It maps
M anonymous pages, fills them (so they are resident before any measurement), then every interval
runs one *write round*: page i is written with probability p_i, drawn independently. Each write
stores the round number in the page's first word, so every write changes the page's bytes and the
hash backend can see it.

Profiles (`--profile`):
- `uniform:P`                 every page has p = P.
- `zipf:S[:PMAX]`             hot/cold: p = PMAX / rank**S over a random ranking of the pages.
- `hotcold:FRAC:PHOT:PCOLD`   a random FRAC of the pages has PHOT, the rest PCOLD.
- `phases:SECONDS:PROF1/PROF2/...`  cycles through the profiles, SECONDS each.
- `service`                   the demo's service-like mix: phases of two zipf profiles.

`--workers N` runs the service mode instead (`groundtruth_workers`): a master forks N workers that
share a MAP_SHARED region and write their own private pages, with an exact write log.

`--truth FILE.npz` writes the truth: `base_vpn`, `page_size`, `pages`, `interval`, `p` (phases x
pages), `phase_seconds`, `ready_monotonic` (when the fill was done), and at exit the exact write log: `round_start`, `round_end` (CLOCK_MONOTONIC
seconds) and `written` (page indices, concatenated) with `written_end` (cumulative count per round).
The write log is what makes an honest comparison possible although the collector's and the
workload's intervals are not synchronised.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calm.core import ready
from calm.core.argtypes import OneLineErrorParser
from calm.core.errors import CalmError
from calm.core.paths import private_file

PAGE_SIZE = mmap.PAGESIZE


class ProfileError(ValueError):
    """A --profile string that cannot be understood."""


@dataclass
class Profile:
    """Per-page write probabilities per phase; a single-phase profile has one row."""

    p: np.ndarray  # (phases, pages)
    phase_seconds: float  # 0 for a single phase

    def at(self, elapsed: float) -> np.ndarray:
        if self.p.shape[0] == 1 or self.phase_seconds <= 0:
            return self.p[0]
        return self.p[int(elapsed // self.phase_seconds) % self.p.shape[0]]


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ProfileError(f"{what} must be a number, got {text!r}") from None


def _probability(text: str, what: str) -> float:
    value = _float(text, what)
    if not 0.0 <= value <= 1.0:
        raise ProfileError(f"{what} must be between 0 and 1, got {text}")
    return value


def single_profile(spec: str, pages: int, rng: np.random.Generator) -> np.ndarray:
    """Probabilities of one phase from a spec like `uniform:0.1` or `zipf:1.2:0.9`."""
    kind, _, rest = spec.partition(":")
    args = rest.split(":") if rest else []
    if kind == "uniform" and len(args) == 1:
        return np.full(pages, _probability(args[0], "uniform P"))
    if kind == "zipf" and len(args) in (1, 2):
        exponent = _float(args[0], "zipf exponent")
        if exponent < 0:
            raise ProfileError("zipf exponent must be >= 0")
        pmax = _probability(args[1], "zipf PMAX") if len(args) == 2 else 0.9
        ranks = rng.permutation(pages) + 1.0
        return pmax / ranks**exponent
    if kind == "hotcold" and len(args) == 3:
        frac = _probability(args[0], "hotcold FRAC")
        p = np.full(pages, _probability(args[2], "hotcold PCOLD"))
        p[rng.permutation(pages)[: int(round(frac * pages))]] = _probability(args[1], "hotcold PHOT")
        return p
    raise ProfileError(
        f"unknown profile {spec!r} (uniform:P, zipf:S[:PMAX], hotcold:FRAC:PHOT:PCOLD, "
        "phases:SECONDS:PROF/PROF..., service)"
    )


def parse_profile(spec: str, pages: int, rng: np.random.Generator) -> Profile:
    if spec == "service":
        spec = "phases:4:zipf:1.1:0.9/hotcold:0.05:0.6:0.002"
    if spec.startswith("phases:"):
        _, seconds, rest = spec.split(":", 2) if spec.count(":") >= 2 else (None, "", "")
        phase_seconds = _float(seconds, "phase SECONDS")
        if phase_seconds <= 0 or not rest:
            raise ProfileError("phases needs SECONDS > 0 and at least one profile")
        return Profile(np.stack([single_profile(s, pages, rng) for s in rest.split("/")]), phase_seconds)
    return Profile(single_profile(spec, pages, rng)[None, :], 0.0)


class WriteLog:
    """Times and pages of every write round, kept in memory and saved at exit."""

    def __init__(self) -> None:
        self.round_start: list[float] = []
        self.round_end: list[float] = []
        self.written: list[np.ndarray] = []

    def add(self, start: float, end: float, pages: np.ndarray) -> None:
        self.round_start.append(start)
        self.round_end.append(end)
        self.written.append(pages.astype(np.uint32))

    def arrays(self) -> dict[str, np.ndarray]:
        counts = np.array([w.size for w in self.written], dtype=np.int64)
        return {
            "round_start": np.array(self.round_start),
            "round_end": np.array(self.round_end),
            "written": np.concatenate(self.written) if self.written else np.empty(0, np.uint32),
            "written_end": np.cumsum(counts),
        }


class StopOnSignal:
    """Set by SIGTERM or SIGINT: the loop finishes its round, then the workload saves its log."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.set = True


def allocate(pages: int) -> tuple[mmap.mmap, np.ndarray, int]:
    """Anonymous private memory as a (pages, words) uint64 array, filled so it is resident."""
    region = mmap.mmap(-1, pages * PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    # Transparent huge pages would make the kernel track soft-dirty per 2 MiB: one write would mark
    # 512 pages dirty and the truth (per 4 KiB page) could not be compared.
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        region.madvise(mmap.MADV_NOHUGEPAGE)
    words = np.frombuffer(region, dtype=np.uint64).reshape(pages, PAGE_SIZE // 8)
    words[:] = np.arange(1, pages + 1, dtype=np.uint64)[:, None]  # non-zero, distinct
    address = ctypes.addressof(ctypes.c_char.from_buffer(region))
    return region, words, address


def _save_truth(path: Path, arrays: dict) -> None:
    """The .npz, written privately and renamed into place (calm.core.paths)."""
    with private_file(path, force=True) as f:
        np.savez(f, **arrays)


def run(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    try:
        profile = parse_profile(args.profile, args.pages, rng)
        shared = parse_profile(args.shared_profile, args.shared_pages, rng) if args.workers else None
    except ProfileError as exc:
        print(f"workload: error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.ready_file:
            ready.remove_stale(Path(args.ready_file))
    except CalmError as exc:
        print(f"workload: error: {exc}", file=sys.stderr)
        return 1
    if shared is not None:
        if profile.p.shape[0] > 1 or shared.p.shape[0] > 1:
            print("workload: error: --workers takes single-phase profiles", file=sys.stderr)
            return 2
        from calm.workloads.groundtruth_workers import run_workers

        return run_workers(args, profile.p[0], shared.p[0])
    region, words, address = allocate(args.pages)
    truth = {
        "base_vpn": np.int64(address // PAGE_SIZE),
        "page_size": np.int64(PAGE_SIZE),
        "pages": np.int64(args.pages),
        "interval": np.float64(args.interval),
        "p": profile.p,
        "phase_seconds": np.float64(profile.phase_seconds),
        "pid": np.int64(os.getpid()),
    }
    log = WriteLog()
    stop = StopOnSignal()
    truth["ready_monotonic"] = np.float64(time.monotonic())  # memory filled; rounds follow
    if args.truth:
        _save_truth(Path(args.truth), truth)
    if args.ready_file:
        try:
            ready.announce(Path(args.ready_file))
        except CalmError as exc:
            print(f"workload: error: {exc}", file=sys.stderr)
            return 1
    t0 = time.monotonic()
    round_no = 0
    while not stop.set:
        now = time.monotonic()
        if args.duration and now - t0 >= args.duration:
            break
        if args.rounds and round_no >= args.rounds:
            break
        p = profile.at(now - t0)
        pages = np.flatnonzero(rng.random(args.pages) < p)
        start = time.monotonic()
        words[pages, 0] = np.uint64(round_no + 1) << np.uint64(32) | pages.astype(np.uint64)
        end = time.monotonic()
        log.add(start, end, pages)
        round_no += 1
        next_round = t0 + round_no * args.interval
        delay = next_round - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    if args.truth:
        _save_truth(Path(args.truth), {**truth, **log.arrays()})
    del words
    region.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m calm.workloads.groundtruth",
        description="Dirty memory with known per-page probabilities (ground truth for calm).",
    )
    parser.add_argument("--pages", type=int, default=4096, help="pages to allocate (default 4096 = 16 MiB)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between write rounds")
    parser.add_argument("--profile", default="uniform:0.1", help="uniform:P | zipf:S[:PMAX] | "
                        "hotcold:FRAC:PHOT:PCOLD | phases:SECONDS:PROF/PROF... | service")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until signalled)")
    parser.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (0: no limit)")
    parser.add_argument("--truth", help="write the truth (and at exit the write log) to this .npz")
    parser.add_argument("--ready-file", help="create this file (holding our pid) once the memory is resident")
    parser.add_argument("--workers", type=int, default=0,
                        help="service mode: fork this many workers that share a MAP_SHARED region "
                             "(each writes its own --pages private pages too; see groundtruth_workers)")
    parser.add_argument("--shared-pages", type=int, default=1024, help="pages of the shared region (--workers)")
    parser.add_argument("--shared-profile", default="uniform:0.05",
                        help="write probability of each shared page per worker round (--workers)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.pages <= 0 or args.interval <= 0 or args.duration < 0 or args.rounds < 0:
        parser.error("--pages and --interval must be > 0, --duration and --rounds >= 0")
    if args.workers < 0 or args.shared_pages <= 0:
        parser.error("--workers must be >= 0 and --shared-pages > 0")
    if args.workers and args.rounds:
        parser.error("--rounds is not supported with --workers (use --duration)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
