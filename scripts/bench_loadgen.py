#!/usr/bin/env python3
"""How fast can `calm load` keep an open-loop Poisson schedule on this machine?

Against calm's Apache (loopback, 1 KiB index page), runs the generator at increasing rates and
reports achieved responses/s, the start-lag p99 and whether the schedule was kept. Baseline in the
same run: ApacheBench (`ab`, C, closed loop, 16 connections), i.e. what the server and loopback
sustain with a client that costs almost nothing. Both share the machine's cores with httpd.

    python scripts/bench_loadgen.py [--rates 500,1000,2000,3000] [--seconds 5]
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calm_apache import Apache  # noqa: E402

from calm.core.argtypes import OneLineErrorParser  # noqa: E402
from calm.workloads.loadgen import LoadConfig, run_load, summarise  # noqa: E402


def main() -> int:
    p = OneLineErrorParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="500,1000,2000,3000")
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    print(f"# {platform.node()} {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"load average {os.getloadavg()[0]:.2f}")
    with Apache() as httpd:
        url = httpd.url("/")
        if shutil.which("ab"):
            out = subprocess.run(["ab", "-q", "-n", "20000", "-c", "16", url], capture_output=True, text=True).stdout
            m = re.search(r"Requests per second:\s+([\d.]+)", out)
            print(f"baseline ab -c 16 (closed loop): {m[1] if m else '?'} responses/s")
        print("rate/s  achieved/s  lag p99 ms  late>10ms  kept")
        for rate in (float(r) for r in args.rates.split(",")):
            s = summarise(run_load(LoadConfig(url, rate=rate, duration=args.seconds, seed=1)))
            print(f"{rate:6g}  {s['throughput']:10.1f}  {s['start_lag_s']['p99'] * 1e3:10.1f}  "
                  f"{s['late_starts'] / s['requests']:8.2%}  {s['schedule_kept']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
