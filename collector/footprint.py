"""A service's resident memory with every page counted once: the sum of its processes' Pss.

Why Pss (/proc/PID/smaps_rollup): a page mapped by n processes counts 1/n in each, so the Pss of
all of a service's processes adds up to its resident memory with each page once: shared memory
(PostgreSQL's buffers, Apache's scoreboard) and private pages still shared copy-on-write after a
fork alike. The kernel computes it from the page's map count, without root. The alternative, reading
every private page's PFN from pagemap (root only) and de-duplicating them in calm, costs 8 bytes of
pagemap per mapped page plus a sort per census and gives the same count for pages shared within the
service (measured in BENCHMARKS.md); calm does not use PFNs. Pss undercounts pages also mapped by
processes outside the service (libc's code shared with the whole system counts only its share).

The kernel walks every page table of the process to compute it (about 130 ms for nine processes
with 5.6 GiB of Rss between them, BENCHMARKS.md), so calm takes a census at most once a second
(`CENSUS_SECONDS`), and for a large service at most every 20 times what the last one cost
(`CENSUS_SHARE`: at most 5% of the time), and carries the figures forward between censuses.
"""

from __future__ import annotations

import errno

from calm.collector.procfs import PAGE_SIZE, ProcessGone

CENSUS_SECONDS = 1.0
CENSUS_SHARE = 20.0  # the next census waits at least this many times the last one's cost


def pss_pages(pid: int) -> int:
    """The process's proportional set size, in pages (rounded to the nearest page)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            text = f.read()
    except OSError as exc:
        if exc.errno in (errno.ESRCH, errno.ENOENT):
            raise ProcessGone(pid) from exc
        return 0  # not permitted or not supported: unknown, reported as 0
    for line in text.splitlines():
        if line.startswith(b"Pss:"):
            return round(int(line.split()[1]) * 1024 / PAGE_SIZE)
    if not text:
        raise ProcessGone(pid)
    return 0
