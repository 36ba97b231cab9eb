"""The figure of a live migration driven by `calm migrate`: the max-bandwidth the policy set and
the throughput QEMU achieved over time (top), and QEMU's remaining dirty memory with its bitmap
syncs (bottom); the switch-over is marked. Drawn from migrate.json's dictionary alone."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from calm.core.paths import private_file  # noqa: E402
from calm.replay.plots import ALGORITHM_COLORS  # noqa: E402


def plot_migration(record: dict, path: Path) -> Path:
    """migrate.png next to migrate.json (0600, never through a symlink)."""
    fig = migration_figure(record)
    with private_file(path, force=True) as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def migration_figure(record: dict):
    """The figure itself, for migrate.png and for `calm report --migrate`."""
    samples = record["samples"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    policy = record["summary"]["policy"]
    color = ALGORITHM_COLORS.get(policy, "C0")
    rates = record["rates"]
    if rates:
        ts = [r["t_s"] for r in rates] + [samples[-1]["t_s"] if samples else rates[-1]["t_s"]]
        values = [r["max_bandwidth_bytes_s"] * 8 / 1e6 for r in rates]
        top.step(ts, values + values[-1:], where="post", color=color, label=f"max-bandwidth set ({policy})")
    t_prev, bytes_prev, t_mid, used = 0.0, 0, [], []
    for s in samples:
        dt = s["t_s"] - t_prev
        if dt > 0:
            t_mid.append((s["t_s"] + t_prev) / 2)
            used.append((s["transferred"] - bytes_prev) * 8 / dt / 1e6)
        t_prev, bytes_prev = s["t_s"], s["transferred"]
    top.plot(t_mid, used, ".-", color="black", lw=0.8, ms=3, label="throughput QEMU achieved")
    top.axhline(record["summary"]["link_bps"] / 1e6, color="grey", ls=":", label="link")
    top.set_ylabel("Mbit/s")
    top.legend(fontsize=8, loc="best")
    top.set_title(f"calm migrate ({policy}): {record['summary']['real']['outcome']}")
    bottom.plot([s["t_s"] for s in samples], [s["remaining"] / 2**20 for s in samples], color=color,
                label="ram.remaining (dirty, not yet sent)")
    syncs = [s["t_s"] for a, s in zip(samples, samples[1:]) if s["dirty_sync_count"] > a["dirty_sync_count"]]
    for i, t in enumerate(syncs):
        bottom.axvline(t, color="grey", lw=0.5, ls="--", label="bitmap sync" if i == 0 else None)
    switch = record["summary"]["real"].get("switchover_at_s")
    for ax in (top, bottom):
        if switch is not None:
            ax.axvline(switch, color="red", lw=1, label="switch-over asked" if ax is bottom else None)
    bottom.set_ylabel("MiB")
    bottom.set_xlabel("time since migrate (s)")
    bottom.legend(fontsize=8, loc="best")
    return fig
