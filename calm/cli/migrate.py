"""`calm migrate --qmp SOCKET --to URI --link RATE`: a replay policy drives a real QEMU migration.

The policies of `calm replay` steer a running QEMU through QMP (calm.qemu.steer, with
calm.replay.live translating QEMU's figures into a policy's view): each step the policy's rate is
set as max-bandwidth, and at the policy's stop QEMU is made to switch over. Writes migrate.json
(the rates set over time, what QEMU reported each step and at the end, and with --profile the
simulator's prediction of the same migration beside it) and migrate.png, privately, in -o DIR.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from calm.cli.output_options import add_output_options
from calm.core import argtypes
from calm.core.errors import CalmError, UsageError

DEFAULT_OUTPUT = "calm-migrate"
DEFAULT_INTERVAL_S = 0.5
DEFAULT_DEADLINE_S = 600.0
POLICY_NAMES = ("calm", "clark", "fixed", "qemu")

HELP = "drive a real QEMU live migration with a calm policy (over QMP), and compare with the replay"
DESCRIPTION = (
    "Connect to a running QEMU's QMP socket, migrate its guest to URI and steer the migration step "
    "by step with a policy: max-bandwidth set to the policy's rate, the switch-over at the policy's "
    "stop. --link is the bandwidth the migration shares with the service (the policy's B). Ctrl-C "
    "cancels the migration (migrate_cancel); the guest runs on at the source."
)
EPILOG = ("example: calm migrate --qmp /run/vm.qmp --to tcp:dst:4444 --link 1Gbit --policy calm "
          "--profile vm.h5 -o run1")


def configure(p: argparse.ArgumentParser) -> None:
    from calm.replay.defaults import DEFAULT_COST_SPEC

    p.add_argument("--qmp", required=True, metavar="SOCKET",
                   help="the source QEMU's QMP unix socket (-qmp unix:SOCKET,server=on,wait=off)")
    p.add_argument("--to", required=True, metavar="URI",
                   help="where to migrate, as QEMU's migrate takes it (tcp:HOST:PORT, unix:PATH, ...): a "
                        "destination QEMU listening with -incoming")
    p.add_argument("--link", required=True, type=argtypes.rate(), metavar="RATE",
                   help="the link's bandwidth shared by the service and the migration (e.g. 1Gbit)")
    p.add_argument("--policy", choices=POLICY_NAMES, default="calm",
                   help="calm (default), clark, fixed (the uniform model's optimal rate and stop), or qemu "
                        "(no steering: QEMU's max-bandwidth and downtime-limit, its own switch-over)")
    p.add_argument("--cost", metavar="SPEC", default=DEFAULT_COST_SPEC,
                   help=f"cost function F, as calm replay's (default {DEFAULT_COST_SPEC})")
    p.add_argument("--profile", metavar="TRACE",
                   help="a recording of this guest (calm record --region ...): seeds the policy's write "
                        "probability and is replayed with the same policy for the prediction beside the result")
    p.add_argument("--interval", type=argtypes.duration(minimum=0.05), metavar="DURATION",
                   help=f"control step (default: the profile's sampling interval, else {DEFAULT_INTERVAL_S:g}s)")
    p.add_argument("--rate", type=argtypes.rate(), metavar="RATE",
                   help="qemu policy: max-bandwidth to hold (default: the source's current setting)")
    p.add_argument("--downtime-limit", type=argtypes.duration(), metavar="DURATION",
                   help="qemu policy: downtime-limit (default: the source's current setting)")
    p.add_argument("--clark-min", type=argtypes.rate(), metavar="RATE", help="clark policy: first round's rate")
    p.add_argument("--clark-increment", type=argtypes.rate(allow_zero=True), metavar="RATE",
                   help="clark policy: rate increment per round")
    p.add_argument("--deadline", type=argtypes.duration(), default=DEFAULT_DEADLINE_S, metavar="DURATION",
                   help=f"cancel a migration still running after this long (default {DEFAULT_DEADLINE_S:g}s)")
    add_output_options(p, default=DEFAULT_OUTPUT, output_help=f"output directory (default {DEFAULT_OUTPUT})",
                       earlier="run", no_plots_help="write only migrate.json",
                       json_help="print migrate.json's summary as JSON on stdout")


def _check(args: argparse.Namespace) -> None:
    if (args.rate is not None or args.downtime_limit is not None) and args.policy != "qemu":
        raise UsageError("--rate and --downtime-limit set the qemu policy's parameters (use --policy qemu)")
    if (args.clark_min is not None or args.clark_increment is not None) and args.policy != "clark":
        raise UsageError("--clark-* options need --policy clark")
    scheme, sep, rest = args.to.partition(":")
    if not sep or not scheme or not rest:
        raise UsageError(f"--to {args.to!r} is not a migration URI (e.g. tcp:HOST:PORT or unix:PATH)")
    if args.rate is not None and args.rate > args.link * (1 + 1e-9):
        raise UsageError("--rate exceeds --link: the migration cannot send faster than the link")


def run(args: argparse.Namespace) -> int:
    _check(args)
    from calm.core.paths import check_input_trace, check_output_dir, prepare_output_dir, write_private
    from calm.qemu import migration
    from calm.qemu.qmp import Monitor
    from calm.qemu.steer import steer
    from calm.replay import live
    from calm.replay.cost import parse_cost

    out = Path(args.output)
    check_output_dir(out, force=args.force)
    cost = parse_cost(args.cost)
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    mapped = None
    if args.profile is not None:
        from calm.replay.trace_map import map_trace

        mapped = map_trace(check_input_trace(args.profile))
    step_s = args.interval or (mapped.step_seconds if mapped is not None else DEFAULT_INTERVAL_S)
    with Monitor(args.qmp, name="calm-migrate") as monitor:
        current = migration.query(monitor)
        if current.status in migration.ACTIVE_STATES:
            raise CalmError(f"a migration is already running on this QEMU (status {current.status})")
        from calm.qemu.steer import parameters, ram_bytes

        ram = ram_bytes(monitor)
        current_params = parameters(monitor)
        prediction, prior = {}, {}
        if mapped is not None:
            say("calm migrate: replaying the profile for the prediction")
            prediction = _predict(mapped, args, cost, current_params, ram)
            prior = {"source": "profile", "p_per_step": _rescale(prediction["mean_p"], mapped.step_seconds, step_s)}
        elif args.policy != "qemu":
            say("calm migrate: measuring the guest's dirty rate (QEMU calc-dirty-rate, 1 s)")
            rate = migration.calc_dirty_rate(monitor, 1)
            prior = {"source": "calc-dirty-rate", "dirty_rate_mib_s": rate.dirty_rate_mib_s,
                     "p_per_step": live.p_from_dirty_rate(rate.dirty_rate_mib_s, ram, step_s)}
        controller = live.make_controller(
            args.policy, link_bps=args.link, cost=cost, step_s=step_s, prior_p=prior.get("p_per_step", 0.0),
            current=current_params, rate_bytes_s=None if args.rate is None else args.rate / 8.0,
            downtime_limit_ms=None if args.downtime_limit is None else round(args.downtime_limit * 1000),
            clark_min_bps=args.clark_min, clark_increment_bps=args.clark_increment)
        say(f"calm migrate: migrating to {args.to} with {args.policy}, a step every {step_s:.3g} s (Ctrl-C cancels)")
        progress = None if args.quiet else _progress
        result = steer(monitor, args.to, controller, interval_s=step_s, link_bytes_s=args.link / 8.0,
                       deadline_s=args.deadline, log=progress)
    record = _record(args, result, controller, cost, prior, prediction, step_s)
    prepare_output_dir(out, force=args.force)
    write_private(out / "migrate.json", json.dumps(record, indent=1, default=float) + "\n", force=args.force)
    if not args.no_plots:
        from calm.replay.live_plots import plot_migration

        plot_migration(record, out / "migrate.png")
    summary = record["summary"]
    if args.json:
        print(json.dumps(summary, default=float))
    elif not args.quiet and result.outcome == "completed":
        print(_summary_text(summary))
    if result.outcome == "interrupted":
        print("calm migrate: interrupted: the migration was cancelled and the guest runs on at the source",
              file=sys.stderr)
        return 130
    if result.outcome == "cancelled":
        print(f"calm migrate: error: the migration did not complete within {args.deadline:g} s and was "
              "cancelled; the guest runs on at the source", file=sys.stderr)
        return 1
    return 0


def _rescale(p: float, from_s: float, to_s: float) -> float:
    """A per-step write probability for a step of another length (independent steps)."""
    return 1.0 - (1.0 - min(p, 0.999)) ** (to_s / from_s)


def _predict(mapped, args, cost, current: dict, ram: int) -> dict:
    from calm.replay.runner import PolicyOptions, run_replay
    from calm.replay.scenario import Scenario

    options = PolicyOptions(
        clark_min_bps=args.clark_min, clark_increment_bps=args.clark_increment,
        qemu_max_bandwidth_bps=(args.rate if args.rate is not None else current["max-bandwidth"] * 8.0),
        qemu_downtime_limit_s=(args.downtime_limit if args.downtime_limit is not None
                               else current["downtime-limit"] / 1000.0))
    report = run_replay(mapped, [Scenario(None, args.link)], [args.policy], cost, options=options,
                        max_time_s=args.deadline)
    scenario = report.scenarios[0]
    row = report.table()[0]
    if scenario.ram_bytes != ram:
        row["note"] = (f"the profile's memory ({scenario.ram_bytes} bytes) is not the guest's RAM ({ram} bytes): "
                       "was it recorded from this guest with --region?")
    return {**row, "mean_p": scenario.mean_p, "step_seconds": report.step_seconds}


def _progress(sample) -> None:
    rate = "" if sample.rate_set_bytes_s is None else f" rate {sample.rate_set_bytes_s * 8 / 1e6:.0f} Mbit/s"
    print(f"  {sample.t_s:7.1f} s {sample.status:9s} remaining {sample.remaining / 2**20:7.1f} MiB"
          f" syncs {sample.dirty_sync_count:3d}{rate}{' -> switch-over' if sample.switchover else ''}",
          file=sys.stderr)


def _record(args, result, controller, cost, prior: dict, prediction: dict, step_s: float) -> dict:
    from calm.core.version import __version__
    from calm.replay.live import modelled_cost

    final = result.final
    samples = [vars(s) for s in result.samples]
    real = {"outcome": result.outcome, "status": final.get("status"),
            "total_time_s": final.get("total_time_ms", 0) / 1000,
            "downtime_s": final.get("downtime_ms", 0) / 1000, "bytes": final.get("transferred"),
            "syncs": final.get("dirty_sync_count"), "normal_pages": final.get("normal"),
            "zero_pages": final.get("duplicate"),
            "rates_set": len(result.rates), "switchover_at_s": result.switchover_at_s,
            "stop_reason": result.switchover_reason or ("QEMU's own switch-over" if result.outcome == "completed"
                                                        else "")}
    if result.outcome == "completed":
        real["modelled_cost_s"] = modelled_cost(samples, real["downtime_s"], args.link, cost)
    summary = {"policy": args.policy, "link_bps": args.link, "real": real}
    if prediction:
        summary["predicted"] = {k: prediction.get(k) for k in ("cost_s", "total_time_s", "downtime_s", "bytes_sent",
                                                               "syncs", "normal_pages", "zero_pages", "forced",
                                                               "stop_reason", "note") if k in prediction}
    return {"tool": "calm migrate", "version": __version__, "qmp": args.qmp, "uri": args.to, "step_s": step_s,
            "cost": cost.describe(), "prior": prior, "controller": controller.describe(), "summary": summary,
            "rates": result.rates, "samples": samples, "qemu_final": final,
            "parameters_before": result.parameters_before, "ram_bytes": result.ram_bytes,
            "started_monotonic": result.started_monotonic,
            "prediction": prediction, "units": {"time": "s", "rates": "bytes/s as QEMU takes them",
                                                "cost": "seconds of violated SLA", "link_bps": "bit/s"}}


def _summary_text(summary: dict) -> str:
    real = summary["real"]
    lines = [f"{'':12s} {'total time':>11s} {'downtime':>9s} {'MiB sent':>9s} {'syncs':>6s} {'cost':>8s}"]

    def row(name, t, d, b, s, c):
        fmt = lambda x, spec: "-" if x is None else format(x, spec)  # noqa: E731
        lines.append(f"{name:12s} {fmt(t, '10.2f')}s {fmt(d, '8.3f')}s {fmt(None if b is None else b / 2**20, '9.1f')} "
                     f"{fmt(s, '6d')} {fmt(c, '7.2f')}s")

    row(f"real ({real['outcome']})", real["total_time_s"], real["downtime_s"], real["bytes"], real["syncs"],
        real.get("modelled_cost_s"))
    if "predicted" in summary:
        p = summary["predicted"]
        row("predicted", p["total_time_s"], p["downtime_s"], p["bytes_sent"], p["syncs"], p["cost_s"])
    return "\n".join(lines)
