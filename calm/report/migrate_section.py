"""The report's live migrations: what `calm migrate` did to a real QEMU, beside what calm predicted.

Why in the report: the replay table is a simulation; a migrate.json is the measured run of the same
policy on the real guest (QEMU's own figures at completion, the rates calm set, the cost model
applied to the throughput QEMU achieved) and, when the migration was seeded with a profile, the
replay's prediction of that very run. Putting them side by side is how a user sees whether the
simulated ranking holds. Reads migrate.json only (calm/cli/migrate.py writes it); the figure is
the one `calm migrate` draws (calm.replay.live_plots), so the two never disagree.
"""

from __future__ import annotations

from pathlib import Path

from calm.core import units
from calm.core.errors import CalmError
from calm.replay.live_plots import migration_figure
from calm.report.figures import to_image
from calm.report.html import Column, Raw, figure, section, table
from calm.report.replay_results import read_json

_SUMMARY_KEYS = ("policy", "link_bps", "real")
_REAL_KEYS = ("outcome", "total_time_s", "downtime_s", "bytes", "syncs", "stop_reason")


def load_migration(text: str | Path) -> tuple[Path, dict]:
    """(path, record) of a migrate.json (or the directory `calm migrate -o` wrote); CalmError if it
    is not one."""
    path = Path(text)
    path = path / "migrate.json" if path.is_dir() else path
    record = read_json(path, "migration record", "migrate.json")
    summary = record.get("summary") if isinstance(record, dict) else None
    if (not isinstance(record, dict) or record.get("tool") != "calm migrate" or not isinstance(summary, dict)
            or any(k not in summary for k in _SUMMARY_KEYS)
            or any(k not in summary["real"] for k in _REAL_KEYS)
            or not isinstance(record.get("samples"), list) or not isinstance(record.get("rates"), list)):
        raise CalmError(f"{path} is not a migrate.json written by `calm migrate`")
    return path, record


def _opt(value, fmt) -> str:
    return "–" if value is None else fmt(value)


def migrate_section(migrations: list[tuple[Path, dict]]) -> Raw:
    columns = [Column("run"), Column("policy"), Column("total time", True), Column("downtime", True),
               Column("data sent", True), Column("syncs", True), Column("cost on the run", True),
               Column("predicted"), Column("outcome")]
    rows, figures = [], []
    for path, record in migrations:
        summary = record["summary"]
        real, predicted = summary["real"], summary.get("predicted") or {}
        run = path.parent.name if path.name == "migrate.json" else path.name
        guess = ("– (no --profile)" if not predicted else
                 ", ".join(_opt(predicted.get(k), units.seconds) for k in ("cost_s", "total_time_s", "downtime_s")))
        rows.append([run, summary["policy"], units.seconds(real["total_time_s"]), units.seconds(real["downtime_s"]),
                     _opt(real["bytes"], units.mib), _opt(real["syncs"], lambda n: f"{n:,}"),
                     _opt(real.get("modelled_cost_s"), units.seconds), guess,
                     real["outcome"] + (f": {real['stop_reason']}" if real["stop_reason"] else "")])
        figures.append(figure(
            to_image(migration_figure(record)), f"{run}: {summary['policy']} on a "
            f"{units.mbit_s(summary['link_bps'])} link",
            [f"Top: the max-bandwidth calm set (QEMU's rate limit) and the throughput QEMU achieved; "
             f"bottom: QEMU's remaining dirty memory and its bitmap syncs. From {path}."],
            alt=f"rates and remaining memory of the {summary['policy']} migration {run}", wide=True))
    lead = ("Migrations that calm migrate drove on a real QEMU over QMP, with QEMU's own figures at the "
            "end. \"Cost on the run\" applies the replay's cost function to the throughput QEMU achieved "
            "in each step, plus QEMU's measured downtime; \"predicted\" is the cost, total time and "
            "downtime of the replay of the profile the migration was seeded with, for the same policy, "
            "link and cost.")
    return section("migrations", "Live migrations", lead, [table(columns, rows), *figures])
