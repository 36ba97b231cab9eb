"""`calm load`: drive an HTTP service with open-loop Poisson arrivals and report SLA violations.

Options are parsed as strings and validated here so that every bad value is one `calm: error:` line.
The engine and the reasons behind it are in calm/loadgen.py.
"""

from __future__ import annotations

import argparse
import json

from calm.errors import CalmError
from calm.loadgen import LoadConfig, format_summary, run_load, summarise, write_latencies


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "load", help="open-loop Poisson HTTP load against a loopback (or calm netns) service",
        description="Send HTTP GETs to URL at Poisson arrival times (open loop: a request starts at its "
                    "time whether or not earlier ones finished), bounded by --count and/or --duration; "
                    "report throughput, latency percentiles and the fraction of requests above the SLA "
                    "(timeouts and failures count as violations). Only loopback addresses, or veth "
                    "addresses inside a network namespace made by calm's scripts, are accepted.")
    p.add_argument("url", metavar="URL", nargs="+", help="http://127.0.0.1:PORT/path (loopback or a calm-* netns); "
                   "with several, each request picks one at random (repeat a URL to weight it)")
    p.add_argument("--rate", metavar="R", required=True, help="mean arrivals per second")
    p.add_argument("--count", metavar="N", help="send at most N requests")
    p.add_argument("--duration", metavar="SECONDS", help="send arrivals for at most this long")
    p.add_argument("--sla", metavar="SECONDS", default="1", help="latency above this violates the SLA (default 1)")
    p.add_argument("--timeout", metavar="SECONDS", help="give up on a request after this long "
                   "(default: 10 s or 5 x SLA, whichever is larger)")
    p.add_argument("--max-inflight", metavar="N", default="2000",
                   help="drop (and count as violations) arrivals beyond N requests in flight (default 2000)")
    p.add_argument("--seed", metavar="N", help="random seed of the arrival times (default: random, reported)")
    p.add_argument("-o", "--output", metavar="CSV", help="write every request's latency to this CSV")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_load_command)


def _number(text: str | None, option: str, kind=float):
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise CalmError(f"{option} '{text}' is not {what}") from None


def run_load_command(args: argparse.Namespace) -> int:
    sla = _number(args.sla, "--sla")
    timeout = _number(args.timeout, "--timeout")
    if timeout is None:
        timeout = max(10.0, 5 * sla) if sla and sla > 0 else 10.0
    config = LoadConfig(
        url=args.url,
        rate=_number(args.rate, "--rate"),
        count=_number(args.count, "--count", int),
        duration=_number(args.duration, "--duration"),
        sla=sla,
        timeout=timeout,
        max_inflight=_number(args.max_inflight, "--max-inflight", int),
        seed=_number(args.seed, "--seed", int),
    )
    if config.count is None and config.duration is None:
        raise CalmError("give --count, --duration or both: the load must be bounded")
    if config.seed is not None and config.seed < 0:
        raise CalmError(f"--seed must be non-negative, not {config.seed}")
    result = run_load(config)
    summary = summarise(result)
    if args.output:
        write_latencies(result, args.output)
        summary["latencies_csv"] = args.output
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary))
        if args.output:
            print(f"latencies: {args.output}")
    return 0
