"""A target for `calm record --region` tests: shared memory (a memfd, as QEMU's guest RAM is) and
anonymous memory side by side, both written all the time, so a recording shows which one it read.

    python tests/region_target.py READY_FILE

Maps MEMFD_PAGES pages of a memfd named calm-region-test and ANON_PAGES anonymous pages, writes
every page once, writes READY_FILE (JSON: the start addresses), then every 20 ms writes the memfd
pages HOT_PAGES and every anonymous page, until killed.
"""

from __future__ import annotations

import json
import mmap
import os
import sys
import time

MEMFD_NAME = "calm-region-test"
MEMFD_PAGES = 64
ANON_PAGES = 32
HOT_PAGES = (0, 5, 9, 63)


def _address(buf: mmap.mmap) -> int:
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


def main() -> None:
    ready = sys.argv[1]
    page = mmap.PAGESIZE
    fd = os.memfd_create(MEMFD_NAME)
    os.ftruncate(fd, MEMFD_PAGES * page)
    shared = mmap.mmap(fd, MEMFD_PAGES * page, flags=mmap.MAP_SHARED)
    anon = mmap.mmap(-1, ANON_PAGES * page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for i in range(MEMFD_PAGES):
        shared[i * page] = 1
    for i in range(ANON_PAGES):
        anon[i * page] = 1
    with open(ready + ".tmp", "w") as f:
        json.dump({"memfd_start": _address(shared), "anon_start": _address(anon), "page": page}, f)
    os.rename(ready + ".tmp", ready)
    counter = 0
    while True:
        counter = counter % 250 + 2
        for i in HOT_PAGES:
            shared[i * page + 8] = counter
        for i in range(ANON_PAGES):
            anon[i * page + 8] = counter
        time.sleep(0.02)


if __name__ == "__main__":
    main()
