"""Synthetic calm traces with known per-page dirtying probabilities, for tests and benchmarks.

Written with the real `TraceWriter` (so they are real trace files, read back through the real
reader) from the ground-truth workload's profiles (`calm.workloads.groundtruth.parse_profile`:
`uniform:P`, `zipf:S[:PMAX]`, `hotcold:FRAC:PHOT:PCOLD`, `phases:...`, `service`). Each sample
writes page i independently with its probability: the trace is what a perfect collector would
record from `python -m calm.workloads.groundtruth` with the same profile.
"""

from __future__ import annotations

import os

import numpy as np

from calm.core.version import __version__
from calm.core.errors import CalmError
from calm.trace.writer import TraceWriter
from calm.workloads.groundtruth import ProfileError, parse_profile

BASE_VPN = 0x7F0000000  # where the synthetic process's pages live (virtual page number)


def write_profile_trace(path: str | os.PathLike, *, pages: int, samples: int, interval: float,
                        profile: str, seed: int = 0, page_size: int = 4096,
                        force: bool = True) -> np.ndarray:
    """Writes the trace; returns the per-page probabilities of the first phase (the truth)."""
    rng = np.random.default_rng(seed)
    try:
        prof = parse_profile(profile, pages, rng)
    except ProfileError as exc:
        raise CalmError(str(exc)) from None
    w = TraceWriter(path, force=force, attrs={
        "page_size": page_size, "backend": "synthetic", "interval": interval, "kernel_release": "",
        "hostname": "", "start_time": "1970-01-01T00:00:00Z", "start_time_unix": 0.0,
        "start_monotonic": 0.0, "tool_version": __version__, "command": ["synthetic", profile]})
    row = w.open_process(pid=1, ppid=0, start_time_unix=0.0, name="synthetic", cmdline=[profile], exe="")
    for s in range(samples):
        p = prof.at(s * interval)
        vpns = np.flatnonzero(rng.random(pages) < p).astype(np.uint64) + np.uint64(BASE_VPN)
        w.add_sample(s * interval, (s + 1) * interval, {row: (vpns, pages)})
        if s % 256 == 255:
            w.flush()
    w.close(status="complete", end_reason="synthetic")
    return prof.p[0]
