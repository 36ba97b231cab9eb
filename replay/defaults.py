"""The replay's defaults and names, in one place that imports nothing heavy (the CLI reads them
to build its parsers before numpy is loaded)."""

# The slides' evaluation table. The slides write "1GB" and "1GBits / sec"; we read the RAM as
# binary (GiB: RAM comes in powers of two) and the link as decimal (Gbit: networking convention).
SLIDE_SCENARIOS = ("1GiB@1Gbit", "512MiB@512Mbit", "512MiB@256Mbit", "256MiB@256Mbit")

# The policies `calm replay` runs by default, in table order.
ALGORITHMS = ("calm", "clark", "xen", "qemu", "fixed")

# F: an M/M/1 service answering 12 requests/s of 1 MiB each, SLA 1 s (see calm.replay.cost).
DEFAULT_COST_SPEC = "mm1:rate=12,size=1MiB,sla=1s"

# How a trace goes on past its end: replayed again from its start, or each footprint page
# written independently with its observed per-step frequency.
EXTEND_MODES = ("loop", "resample")
