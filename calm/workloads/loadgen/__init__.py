"""An open-loop Poisson HTTP load generator (`calm load`): the workload side of the CALM cost model.

WHY open loop: the model's F(Bs) is the probability that a request of a Poisson stream violates its
SLA. A closed-loop client (send, wait, send) slows down when the service slows down and so hides
exactly the queueing that causes violations ("coordinated omission"). Here arrival times are drawn
up front (exponential gaps at the given rate) and every request starts at its time whether or not
earlier ones finished. One asyncio event loop drives all connections through a small Protocol (no
thread per request, no parsing beyond the status line and Content-Length), which keeps the
generator's own cost low enough for a few thousand requests/s on one core. When it still cannot keep
the schedule, the result says so: every request's start lag (actual start - scheduled arrival) is
recorded and summarised.

Each request is one HTTP/1.1 GET on a fresh TCP connection (`Connection: close`), as independent
Poisson clients would send. Latency runs from the request's actual start (connect) to the last byte
of the response. Timeouts, refused connections, truncated bodies, non-2xx answers and requests
dropped because too many were in flight are failures; a failure counts as an SLA violation.

Safety: traffic may only go to loopback addresses, or to an address on a veth inside an isolated
network namespace that calm's own scripts created (named `calm-*`, holding only lo and veth
interfaces and no default route). Host names other than `localhost` are refused without a DNS
lookup.
"""

from calm.workloads.loadgen.engine import LoadConfig, LoadResult, poisson_schedule, run_load
from calm.workloads.loadgen.report import format_summary, summarise, write_latencies
from calm.workloads.loadgen.targets import NETNS_PREFIX, Target, check_address_allowed, parse_target

__all__ = ["LoadConfig", "LoadResult", "NETNS_PREFIX", "Target", "check_address_allowed", "format_summary",
           "parse_target", "poisson_schedule", "run_load", "summarise", "write_latencies"]
