"""`calm load`: drive an HTTP service with open-loop Poisson arrivals and report SLA violations.

The engine and the reasons behind it are in calm.workloads.loadgen (a workload of its own: it is
what the cost function F is measured with, not part of recording or replaying).
"""

from __future__ import annotations

import argparse
import json

from calm.core import argtypes
from calm.core.errors import CalmError, UsageError

# Without --duration, a load is bounded by --count alone: refuse one expected to run over a day.
MAX_UNBOUNDED_SECONDS = 86400.0

HELP = "open-loop Poisson HTTP load against a loopback (or calm netns) service"
DESCRIPTION = (
    "Send HTTP GETs to URL at Poisson arrival times (open loop: a request starts at its time whether or "
    "not earlier ones finished), bounded by --count and/or --duration; report throughput, latency "
    "percentiles and the fraction of requests above the SLA (timeouts and failures count as "
    "violations). Only loopback addresses, or veth addresses inside a network namespace made by calm's "
    "scripts, are accepted."
)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", metavar="URL", nargs="*", help="http://127.0.0.1:PORT/path (loopback or a calm-* "
                   "netns); with several, each request picks one at random (repeat a URL to weight it)")
    p.add_argument("--url-file", metavar="FILE", help="more URLs, one a line (a query log: repeated lines "
                   "weight the mix); blank lines and lines starting with # are skipped")
    p.add_argument("--rate", type=argtypes.number(above=0), metavar="R", required=True,
                   help="mean arrivals per second")
    p.add_argument("--count", type=argtypes.whole(minimum=1), metavar="N", help="send at most N requests")
    p.add_argument("--duration", type=argtypes.duration(), metavar="DURATION",
                   help="send arrivals for at most this long (e.g. 30s)")
    p.add_argument("--sla", type=argtypes.duration(), default=1.0, metavar="DURATION",
                   help="latency above this violates the SLA (default 1s)")
    p.add_argument("--timeout", type=argtypes.duration(), metavar="DURATION",
                   help="give up on a request after this long (default: 10 s or 5 x SLA, whichever is larger)")
    p.add_argument("--max-inflight", type=argtypes.whole(minimum=1), default=2000, metavar="N",
                   help="drop (and count as violations) arrivals beyond N requests in flight (default 2000)")
    p.add_argument("--seed", type=argtypes.whole(), metavar="N",
                   help="random seed of the arrival times (default: random, reported)")
    p.add_argument("-o", "--output", metavar="CSV", help="write every request's latency to this CSV")
    p.add_argument("-f", "--force", action="store_true", help="overwrite an existing CSV")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _urls(args: argparse.Namespace) -> list[str]:
    urls = list(args.url)
    if args.url_file:
        try:
            with open(args.url_file, encoding="utf-8") as f:
                urls += [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
        except (OSError, UnicodeDecodeError) as exc:
            raise CalmError(f"cannot read --url-file {args.url_file}: {getattr(exc, 'strerror', None) or exc}") from None
        if len(urls) == len(args.url):
            raise CalmError(f"--url-file {args.url_file} holds no URL")
    if not urls:
        raise UsageError("give at least one URL, or --url-file FILE")
    return urls


def run(args: argparse.Namespace) -> int:
    if args.count is None and args.duration is None:
        raise UsageError("give --count, --duration or both: the load must be bounded")
    urls = _urls(args)
    if args.duration is None and args.count / args.rate > MAX_UNBOUNDED_SECONDS:
        raise UsageError(f"--count {args.count} at --rate {args.rate:g}/s would take about "
                         f"{args.count / args.rate:.3g} s; give --duration to bound it")
    if args.output:
        from pathlib import Path

        from calm.core.paths import check_output_path

        check_output_path(Path(args.output), force=args.force)
    from calm.workloads.loadgen import LoadConfig, format_summary, run_load, summarise, write_latencies

    config = LoadConfig(url=urls, rate=args.rate, count=args.count, duration=args.duration, sla=args.sla,
                        timeout=args.timeout if args.timeout is not None else max(10.0, 5 * args.sla),
                        max_inflight=args.max_inflight, seed=args.seed)
    result = run_load(config)
    summary = summarise(result)
    if args.output:
        write_latencies(result, args.output, force=args.force)
        summary["latencies_csv"] = args.output
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
        if args.output:
            print(f"latencies: {args.output}")
    return 0
