"""QEMU's pre-copy live migration of RAM (docs/model.md, section 6), as in QEMU 7.2
(Debian 12's) to 9.x: migration/migration.c, migration/ram.c, migration/options.c.

What QEMU does, and where it sits here:
- Setup syncs the dirty bitmap once with every page dirty (`ram_init_bitmaps`); the migration
  thread then sends pages in passes over the bitmap, each page found dirty at the last sync,
  searching on from where the last page went (`find_dirty_block` resumes at
  `last_seen_block`/`last_page` and wraps): `order()` rotates each pass to the last position.
  A sync ORs into the bitmap every page written since the previous one (TCG's global dirty
  memory bitmap, KVM's dirty log, cleared per 1 GiB chunk as the pass reaches it), so a page
  written during a pass goes again in the next even if this pass sent it after the write:
  `resend_written_since_sync`.
- The stream is rate-limited to `max-bandwidth` (default `MAX_THROTTLE`, 128 MiB/s since QEMU
  5.2), enforced in bytes per 100 ms window (`BUFFER_DELAY`) and counting every byte written:
  an 8-byte header per page (`save_page_header`) on top of its 4 KiB, and a page holding only
  zeros as the header plus one byte (`save_zero_page`, counted in `ram.duplicate`): `wire`.
  A link slower than max-bandwidth caps it.
- Every window `migration_update_counters` measures the bandwidth (bytes sent in the window /
  its length) and sets `threshold_size = bandwidth x downtime-limit` (or
  `avail-switchover-bandwidth x downtime-limit` when set, QEMU 8.2+). Here the window is one
  trace step. Before the first measurement the threshold is 0.
- Each iteration of the migration thread (`migration_iteration_run`, before it sends a window's
  worth with `ram_save_iterate`, and again whenever the bitmap runs dry) checks the bitmap's
  remaining dirty bytes: below the threshold, QEMU syncs the bitmap (`ram_save_pending` in 7.2,
  `ram_state_pending_exact` later; counted in `dirty-sync-count`) and completes if what is
  dirty then (pages x page size) is below the threshold or nothing is left; otherwise the next
  pass starts. An empty bitmap before any bandwidth was measured completes without a sync
  (pending 0). `sync_threshold`, `at_sync_point` and `check_interval_s` (each 100 ms window
  of a longer trace step) put this in the simulator; the trace's writes still land at the end
  of their step.
- The final copy (`migration_completion`) stops the guest, syncs once more, and sends every
  dirty page with the rate limit lifted (`qemu_file_set_rate_limit(INT64_MAX)`): it runs at the
  link's speed (`final_rate`).

Results then read in QEMU's terms: `bytes_sent` ~ ram.transferred (without the per-section
markers and RAM block names, a few bytes per iteration), `normal_pages` ~ ram.normal,
`zero_pages` ~ ram.duplicate, `syncs` = dirty-sync-count. Not modelled: auto-converge, xbzrle,
compression, multifd, postcopy, the CPU time of scanning the bitmap and testing pages for zeros
(on a 1 TiB mostly-zero guest QEMU's first pass is bound by that, not by the link), device
state, and the constant few milliseconds of a real switch-over. Without auto-converge a workload
that dirties faster than QEMU sends never converges: the simulator's time limit then forces the
stop and the result is marked `forced` (QEMU would go on until cancelled).
"""

from __future__ import annotations

import math

from calm.core.errors import CalmError
from calm.replay.passes import PageOrder
from calm.replay.policies.base import Hold, MigrationContext, PageLog, Policy, Stop, View, WireFormat

MAX_THROTTLE_BPS = (128 << 20) * 8.0  # QEMU's default max-bandwidth, 128 MiB/s, in bit/s
DEFAULT_DOWNTIME_LIMIT_S = 0.3  # QEMU's default downtime-limit (300 ms)
PAGE_HEADER_BYTES = 8  # save_page_header: be64 offset | flags (RAM_SAVE_FLAG_CONTINUE: no block name)
ZERO_PAGE_BYTES = PAGE_HEADER_BYTES + 1  # header with RAM_SAVE_FLAG_ZERO, then one byte


class Qemu(Policy):
    name = "qemu"
    continuous = True  # passes back to back: a sync and the next pass, within the same step
    resend_written_since_sync = True  # the bitmap sync ORs in every page logged since the last one
    check_interval_s = 0.1  # BUFFER_DELAY: the migration thread checks what is pending once per window
    wire = WireFormat(PAGE_HEADER_BYTES, ZERO_PAGE_BYTES)

    def __init__(self, max_bandwidth_bps: float | None = None, downtime_limit_s: float = DEFAULT_DOWNTIME_LIMIT_S,
                 switchover_bandwidth_bps: float | None = None) -> None:
        if not downtime_limit_s > 0:
            raise CalmError("QEMU downtime-limit must be positive")
        if max_bandwidth_bps is not None and not max_bandwidth_bps > 0:
            raise CalmError("QEMU max-bandwidth must be positive")
        if switchover_bandwidth_bps is not None and not switchover_bandwidth_bps > 0:
            raise CalmError("QEMU avail-switchover-bandwidth must be positive")
        self.max_bandwidth_bps = MAX_THROTTLE_BPS if max_bandwidth_bps is None else float(max_bandwidth_bps)
        self.downtime_limit_s = float(downtime_limit_s)
        self.switchover_bandwidth_bps = switchover_bandwidth_bps

    def begin(self, ctx: MigrationContext) -> None:
        super().begin(ctx)
        self.rate = min(ctx.pages_per_step(self.max_bandwidth_bps), ctx.bandwidth)  # capped by the link
        # the largest threshold a step can produce, in pages: until the pass is that short the
        # policy's answer cannot change (what lets the simulator stride through long passes)
        windows = max(1, round(ctx.step_seconds / self.check_interval_s))  # each may carry up to a page over
        most_bytes_per_s = (self.rate + windows + 2.0) * (ctx.page_size + PAGE_HEADER_BYTES) / ctx.step_seconds
        if self.switchover_bandwidth_bps is not None:
            most_bytes_per_s = self.switchover_bandwidth_bps / 8.0
        self.max_threshold_pages = most_bytes_per_s * self.downtime_limit_s / ctx.page_size

    def threshold_bytes(self, last_step_bytes: float) -> float:
        """threshold_size: measured (or avail-switchover) bandwidth x downtime-limit, bytes."""
        if self.switchover_bandwidth_bps is not None:
            bandwidth = self.switchover_bandwidth_bps / 8.0
        else:
            bandwidth = last_step_bytes / self.ctx.step_seconds
        return bandwidth * self.downtime_limit_s if bandwidth > 0 else 0.0

    def sync_threshold(self, last_step_bytes: float) -> float:
        return self.threshold_bytes(last_step_bytes) / self.ctx.page_size

    def decide(self, view: View) -> Hold:
        return Hold(self.rate, until_pass_left=self.max_threshold_pages)

    def at_sync_point(self, view: View) -> Stop | None:
        threshold = self.threshold_bytes(view.last_step_bytes)
        if threshold == 0.0 and view.pass_left == 0:
            return Stop("QEMU: nothing pending before the first bandwidth measurement")
        pending = view.n_dirty * self.ctx.page_size  # migration_dirty_pages * TARGET_PAGE_SIZE
        if pending == 0 or pending < threshold:
            limit = "unlimited" if math.isinf(self.downtime_limit_s) else f"{self.downtime_limit_s * 1000:g} ms"
            return Stop(f"QEMU: dirty pages after the sync fit in the {limit} downtime limit", after_sync=True)
        return None

    def order(self, log: PageLog) -> PageOrder:
        """Resume the search where the last page went, wrapping at the end of RAM."""
        return PageOrder((log.position < log.cursor).astype(float), cold=0.0)

    def final_rate(self) -> float:
        return self.ctx.bandwidth  # the rate limit is lifted for the final copy

    def describe(self) -> dict:
        to_bps = 8 * self.ctx.page_size / self.ctx.step_seconds
        return {"max_bandwidth_bps": self.max_bandwidth_bps, "effective_rate_bps": self.rate * to_bps,
                "downtime_limit_s": self.downtime_limit_s,
                "avail_switchover_bandwidth_bps": self.switchover_bandwidth_bps,
                "final_copy_bps": self.ctx.bandwidth * to_bps,
                "capped_by_link": bool(self.max_bandwidth_bps > self.ctx.bandwidth * to_bps * (1 + 1e-12))}
