#!/usr/bin/env python3
"""A small database-like service for trying `calm record` / `calm replay --skip`.

It first fills an in-memory sqlite3 table (the start-up burst a looped replay would repeat),
then updates random rows until its time is up (the steady state). README's replay table was
measured with: `calm record -o svc.h5 --interval 0.2 --duration 25 -- python3
scripts/sqlite_fill_update.py` and `calm replay svc.h5 --skip 6s`.

    python3 scripts/sqlite_fill_update.py [--rows 400000] [--seconds 30]
"""

from __future__ import annotations

import random
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calm.core.argtypes import OneLineErrorParser  # noqa: E402


def main() -> None:
    parser = OneLineErrorParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000, help="rows to insert first (200 bytes each)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of random updates after the fill")
    args = parser.parse_args()
    if args.rows < 1 or not args.seconds >= 0:
        parser.error("--rows must be at least 1 and --seconds at least 0")
    db = sqlite3.connect(":memory:")
    db.execute("create table t(k integer primary key, v text)")
    db.executemany("insert into t values (?, ?)", ((i, "x" * 200) for i in range(args.rows)))
    db.commit()
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        db.execute("update t set v = ? where k = ?", ("y" * 200, random.randrange(args.rows)))
        if random.random() < 0.01:
            db.commit()
        time.sleep(0.0002)


if __name__ == "__main__":
    main()
