"""One pass of pre-copy over the dirty pages: which pages it sends, in which order, at what cost.

A pass begins with a dirty-bitmap sync and sends the pages that were dirty then, in order. Its
items are footprint pages (indices into `RamLayout.position`) and, while the first pass has not
reached the end of RAM, *cold* pages (never written, hence never dirty again once sent). Cold
pages are never materialised: a pass holds three segments,

- `head`: footprint pages sent first (a policy's priority below the cold pages'),
- the *scan*: RAM positions from the cold cursor to the end of RAM, where every cold page is an
  item and a footprint page is one if it is a `member` (dirty and of the cold pages' priority);
  other footprint pages are holes, passed over for free,
- `tail`: footprint pages sent after the cold ones,

so taking n pages costs O(log F + footprint pages passed), whatever the RAM size. Without
cold pages left (every pass after the first) the three collapse into one list.

Costs are in page units: a page of data costs `normal`, a page holding only zeros `zero` (both
1.0 unless the policy's wire format says otherwise, QEMU's: `replay.policies.base.WireFormat`).
A page already written again in this round is skipped for free when `skip` flags are given
(Xen). Taking by count (every item costs the same) reproduces the engine's page arithmetic
exactly; taking by budget walks the cumulative cost of mixed zero and data pages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calm.replay.layout import RamLayout

EPS = 1e-9  # rounding slack of the per-step page budget (a rate of 2.9999999999 sends 3)
_EMPTY = np.empty(0, np.int64)


def affordable(avail: float, unit: float) -> int:
    """How many items of cost `unit` fit in a budget of `avail` page units."""
    if unit == 1.0:
        return int(avail + EPS)
    n = int((avail + EPS) / unit)
    while (n + 1) * unit <= avail + EPS:
        n += 1
    while n > 0 and n * unit > avail + EPS:
        n -= 1
    return max(n, 0)


@dataclass
class Taken:
    """What one take from a pass sent."""

    pages: np.ndarray  # footprint pages, in the order sent
    cold: int = 0  # cold pages sent
    cold_zero: int = 0  # of which held only zeros
    skipped: int = 0  # footprint pages passed over because written again this round (Xen)
    cost: float = 0.0  # page units spent (filled by budget takes)
    end: int = -1  # RAM position just after the last page sent (-1: none sent)

    @property
    def items(self) -> int:
        return len(self.pages) + self.cold


@dataclass(frozen=True)
class PageOrder:
    """A policy's order for one pass: lower priority first, equal priorities in RAM order.

    `priority[j]` for footprint page j (np.inf: not in this pass, left for a later pass or the
    stop-and-copy); `cold` the priority of the never-written pages, which the first pass must
    send (finite)."""

    priority: np.ndarray
    cold: float = 0.0


class Pass:
    """The pages of one pass and the cursors through them (see module docstring)."""

    def __init__(self, layout: RamLayout, need: np.ndarray, cold_cursor: int, order: PageOrder | None) -> None:
        self.layout = layout
        pos = layout.position
        M, F = layout.n_pages, layout.footprint
        self.j = int(np.searchsorted(pos, cold_cursor))  # first footprint page at or after the scan cursor
        cold_ahead = (M - cold_cursor) - (F - self.j)
        self.scan = cold_ahead > 0
        self.c = cold_cursor
        if order is None:
            if self.scan:
                self.head = np.flatnonzero(need[:self.j])
                self.member = need.copy()
                self.members_left = int(np.count_nonzero(need[self.j:]))
            else:
                self.head = np.flatnonzero(need)
            self.tail = _EMPTY
        else:
            pr = np.asarray(order.priority, dtype=float)
            if pr.shape != (F,) or not np.isfinite(order.cold):
                raise ValueError(f"a page order needs {F} priorities and a finite cold priority")
            cand = np.flatnonzero(need & ~np.isposinf(pr))
            p = pr[cand]
            if self.scan:
                ahead = pos[cand] >= cold_cursor
                first = (p < order.cold) | ((p == order.cold) & ~ahead)
                scan_members = cand[(p == order.cold) & ahead]
                head, tail = cand[first], cand[p > order.cold]
                self.head = head[np.argsort(pr[head], kind="stable")]
                self.tail = tail[np.argsort(pr[tail], kind="stable")]
                self.member = np.zeros(F, dtype=bool)
                self.member[scan_members] = True
                self.members_left = int(scan_members.size)
            else:
                self.head = cand[np.argsort(p, kind="stable")]
                self.tail = _EMPTY
        self.hi = self.ti = 0
        # items not yet reached (pages a skip would still pass over count too), kept up to date
        self.left = len(self.head) + len(self.tail) + (self.cold_ahead + self.members_left if self.scan else 0)

    # -- counts ------------------------------------------------------------------------------
    @property
    def cold_ahead(self) -> int:
        if not self.scan:
            return 0
        return (self.layout.n_pages - self.c) - (self.layout.footprint - self.j)

    @property
    def done(self) -> bool:
        return self.left == 0

    # -- taking by count ---------------------------------------------------------------------
    def take(self, n: int, skip: np.ndarray | None = None, zero: np.ndarray | None = None) -> Taken:
        """The next n items (fewer if the pass ends), skipping pages flagged in `skip`."""
        out = Taken(_EMPTY)
        parts: list[np.ndarray] = []
        pos = self.layout.position
        if n > 0 and self.hi < len(self.head):
            got, self.hi, skipped = _take_list(self.head, self.hi, n, skip)
            parts.append(got)
            out.skipped += skipped
            n -= len(got)
            if len(got):
                out.end = int(pos[got[-1]]) + 1
        if n > 0 and self.scan:
            got, cold, cold_zero, skipped = self._take_scan(n, skip, zero is not None)
            parts.append(got)
            out.cold, out.cold_zero, out.skipped = cold, cold_zero, out.skipped + skipped
            n -= len(got) + cold
            if len(got) or cold:
                out.end = self.c
        if n > 0 and self.ti < len(self.tail):
            got, self.ti, skipped = _take_list(self.tail, self.ti, n, skip)
            parts.append(got)
            out.skipped += skipped
            if len(got):
                out.end = int(pos[got[-1]]) + 1
        out.pages = parts[0] if len(parts) == 1 else (np.concatenate(parts) if parts else _EMPTY)
        self.left -= len(out.pages) + out.cold + out.skipped
        return out

    def _take_scan(self, n: int, skip, count_zero: bool) -> tuple[np.ndarray, int, int, int]:
        """The next n items of the scan. With skips, windows of 2 x the pages still wanted are
        passed whole unless they hold more items than wanted (then the cut is right after the
        last one wanted): the page arithmetic of a round list, which the first pass once was."""
        pos, member, M = self.layout.position, self.member, self.layout.n_pages
        parts, cold, skipped, start = [], 0, 0, self.c
        while n > 0 and self.c < M:
            c, j0 = self.c, self.j
            x = min(M, c + (2 * n if skip is not None else n))
            j1 = int(np.searchsorted(pos, x))
            is_item = member[j0:j1]
            if skip is not None:
                is_item = is_item & ~skip[j0:j1]
            fp_items = np.flatnonzero(is_item)
            if (x - c) - (j1 - j0) + fp_items.size > n:  # cut right after the n-th item
                holes = pos[j0:j1][~is_item] - c
                a = holes - np.arange(holes.size)
                x = c + (n - 1) + int(np.searchsorted(a, n - 1, side="right")) + 1
                j1 = int(np.searchsorted(pos, x))
                fp_items = fp_items[fp_items < j1 - j0]
                is_item = is_item[:j1 - j0]
            passed = int(np.count_nonzero(member[j0:j1]))
            if fp_items.size:
                parts.append(fp_items + j0)
            cold_here = (x - c) - (j1 - j0)
            cold += cold_here
            skipped += passed - int(fp_items.size)
            self.members_left -= passed
            n -= int(fp_items.size) + cold_here
            self.c, self.j = x, j1
        if self.cold_ahead == 0 and self.members_left == 0:
            self.scan = False
        cold_zero = self.layout.cold_zero_between(start, self.c) if count_zero else 0
        pages = parts[0] if len(parts) == 1 else (np.concatenate(parts) if parts else _EMPTY)
        return pages, cold, cold_zero, skipped

    # -- taking by budget (mixed zero and data pages) ------------------------------------------
    def take_budget(self, budget: float, normal: float, zero_cost: float, zero_now: np.ndarray,
                    skip: np.ndarray | None = None, max_items: int | None = None) -> Taken:
        """Items in order while their cumulative cost stays within `budget` page units (and at
        most `max_items` of them)."""
        out = Taken(_EMPTY)
        parts: list[np.ndarray] = []
        for seg in ("head", "scan", "tail"):
            if budget < min(normal, zero_cost) - EPS or (max_items is not None and out.items >= max_items):
                break
            cap = None if max_items is None else max_items - out.items
            if seg == "scan":
                if not self.scan:
                    continue
                got, cold, cold_zero, skipped, cost = self._budget_scan(budget, normal, zero_cost, zero_now, skip, cap)
                out.cold, out.cold_zero = cold, cold_zero
            else:
                lst = self.head if seg == "head" else self.tail
                i = self.hi if seg == "head" else self.ti
                if i >= len(lst):
                    continue
                got, i, skipped, cost = _budget_list(lst, i, budget, normal, zero_cost, zero_now, skip, cap)
                if seg == "head":
                    self.hi = i
                else:
                    self.ti = i
            parts.append(got)
            out.skipped += skipped
            out.cost += cost
            budget -= cost
            if seg == "scan" and (len(got) or cold):
                out.end = self.c
            elif seg != "scan" and len(got):
                out.end = int(self.layout.position[got[-1]]) + 1
            if (seg == "head" and self.hi < len(self.head)) or (seg == "scan" and self.scan):
                break  # this segment still has items the budget could not pay for
        out.pages = np.concatenate(parts) if parts else _EMPTY
        self.left -= len(out.pages) + out.cold + out.skipped
        return out

    def _budget_scan(self, budget, normal, zero_cost, zero_now, skip, cap):
        """The scan by budget. Its cost is piecewise uniform: single footprint pages, and runs of
        cold pages between footprint pages and zero-run boundaries; the cut is found on those
        pieces, never page by page."""
        lay, M, pos = self.layout, self.layout.n_pages, self.layout.position
        c, j0 = self.c, self.j
        span = int((budget + EPS) / min(normal, zero_cost)) + 2
        while True:
            x_hi = min(M, c + span)
            j1 = int(np.searchsorted(pos, x_hi))
            fp_pos = pos[j0:j1]
            is_item = self.member[j0:j1]
            if skip is not None:
                is_item = is_item & ~skip[j0:j1]
            zs, ze = lay.zero_start, lay.zero_end
            r0, r1 = int(np.searchsorted(ze, c, side="right")), int(np.searchsorted(zs, x_hi))
            cuts = np.unique(np.concatenate(([c, x_hi], fp_pos, fp_pos + 1, np.clip(zs[r0:r1], c, x_hi),
                                             np.clip(ze[r0:r1], c, x_hi))))
            lo, hi = cuts[:-1], cuts[1:]
            k = np.minimum(np.searchsorted(fp_pos, lo), max(fp_pos.size - 1, 0))
            is_fp = (fp_pos[k] == lo) if fp_pos.size else np.zeros(lo.size, dtype=bool)
            fp_j = j0 + k
            n_items = np.where(is_fp, is_item[k] if fp_pos.size else 0, hi - lo)
            unit = np.where(is_fp, np.where(zero_now[np.minimum(fp_j, max(lay.footprint - 1, 0))], zero_cost, normal)
                            if lay.footprint else normal, np.where(lay._in_zero_runs(lo), zero_cost, normal))
            cum_cost = np.cumsum(n_items * unit)
            cum_items = np.cumsum(n_items)
            fits = cum_cost <= budget + EPS
            if cap is not None:
                fits &= cum_items <= cap
            full = int(np.count_nonzero(fits))  # pieces taken whole (a prefix: both sums only grow)
            if full == lo.size and x_hi < M:
                span *= 2
                continue
            break
        spent = float(cum_cost[full - 1]) if full else 0.0
        taken_items = int(cum_items[full - 1]) if full else 0
        end = int(hi[full - 1]) if full else c
        if full < lo.size and not is_fp[full]:  # part of a cold run still fits
            extra = affordable(budget - spent, float(unit[full]))
            if cap is not None:
                extra = min(extra, cap - taken_items)
            end, spent = int(lo[full]) + extra, spent + extra * float(unit[full])
        jend = int(np.searchsorted(pos, end))
        sent = j0 + np.flatnonzero(is_item[:jend - j0])
        passed = int(np.count_nonzero(self.member[j0:jend]))
        cold = (end - c) - (jend - j0)
        cold_zero = lay.cold_zero_between(c, end)
        self.members_left -= passed
        self.c, self.j = end, jend
        if self.cold_ahead == 0 and self.members_left == 0:
            self.scan = False
        return sent, cold, cold_zero, passed - int(sent.size), spent

    # -- strides -----------------------------------------------------------------------------
    def peek_ranks(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(footprint pages among the next n items, their item ranks 0..n-1), without taking
        them; no skipping (strides run only for policies that do not skip)."""
        pages, ranks, base = [], [], 0
        h = self.head[self.hi:self.hi + n]
        if h.size:
            pages.append(h)
            ranks.append(np.arange(h.size, dtype=np.int64))
            base = h.size
        if base < n and self.scan:
            pos, M = self.layout.position, self.layout.n_pages
            left = n - base
            x = self.c + left
            while True:  # extend the window by the holes it contains until it holds `left` items
                x = min(M, x)
                j1 = int(np.searchsorted(pos, x))
                is_item = self.member[self.j:j1]
                holes = (j1 - self.j) - int(np.count_nonzero(is_item))
                if x == M or (x - self.c) - holes >= left:
                    break
                x = self.c + left + holes
            idx = np.flatnonzero(is_item)
            # rank of a member = positions before it in the scan minus the holes before it
            hole_before = np.cumsum(~is_item)[idx] if idx.size else idx
            r = base + (pos[self.j + idx] - self.c) - hole_before
            keep = r < n
            pages.append(self.j + idx[keep])
            ranks.append(r[keep])
            base += min(left, (x - self.c) - holes)
        if base < n and self.ti < len(self.tail):
            t = self.tail[self.ti:self.ti + (n - base)]
            pages.append(t)
            ranks.append(base + np.arange(t.size, dtype=np.int64))
        if not pages:
            return _EMPTY, _EMPTY
        return np.concatenate(pages), np.concatenate(ranks)


def _take_list(lst: np.ndarray, i: int, n: int, skip) -> tuple[np.ndarray, int, int]:
    """Next n pages of a list from index i (skipping flagged ones for free): (pages, new i, skipped)."""
    if skip is None:
        out = lst[i:i + n]
        return out, i + len(out), 0
    parts, skipped, got = [], 0, 0
    while got < n and i < len(lst):
        window = lst[i:i + 2 * (n - got)]
        keep_mask = ~skip[window]
        keep = window[keep_mask]
        if len(keep) > n - got:  # stop right after the (n - got)-th kept page
            cut = int(np.flatnonzero(keep_mask)[n - got - 1]) + 1
            window, keep = window[:cut], keep[:n - got]
        i += len(window)
        skipped += len(window) - len(keep)
        parts.append(keep)
        got += len(keep)
    return (np.concatenate(parts) if parts else _EMPTY), i, skipped


def _budget_list(lst, i, budget, normal, zero_cost, zero_now, skip, cap):
    """Pages of a list from index i while their cumulative cost fits the budget (at most `cap`
    of them): (sent, new i, skipped, spent)."""
    w = int(budget / normal) + 16
    if cap is not None:
        w = min(w, cap + 16)
    while True:
        window = lst[i:i + w]
        items = np.ones(window.size, dtype=bool) if skip is None else ~skip[window]
        cost = np.where(zero_now[window], zero_cost, normal) * items
        cum = np.cumsum(cost)
        fits = cum <= budget + EPS
        if cap is not None:
            fits &= np.cumsum(items) <= cap
        k = int(np.count_nonzero(fits))
        if k == window.size and i + w < len(lst):
            w *= 2
            continue
        break
    took = np.flatnonzero(items[:k])
    k = int(took[-1]) + 1 if took.size else 0  # end right after the last page sent
    sent = window[:k][items[:k]]
    return sent, i + k, int(k - sent.size), float(cum[k - 1]) if k else 0.0
