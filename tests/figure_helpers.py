"""What a reader sees in a matplotlib figure: the texts actually drawn, and where they land.

Why by drawing: a Text object may exist and be invisible (a tick outside the view, a stale label),
so the texts are the ones whose `draw` ran while the figure rendered, measured in pixels after it.
"""

from __future__ import annotations

from itertools import combinations
from unittest import mock

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402


def drawn_texts(fig: Figure) -> list[tuple[Text, Bbox]]:
    """Every non-empty text drawn when the figure renders, with its box in display pixels."""
    drawn: list[Text] = []
    original = Text.draw

    def draw(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return original(self, renderer)

    with mock.patch.object(Text, "draw", draw):
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [(t, t.get_window_extent(renderer)) for t in drawn]


def _overlap(a: Bbox, b: Bbox) -> tuple[float, float]:
    return min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)


def overlapping_texts(fig: Figure, pixels: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of drawn texts that print over each other by more than `pixels` each way."""
    found = []
    for (a, box_a), (b, box_b) in combinations(drawn_texts(fig), 2):
        w, h = _overlap(box_a, box_b)
        if w > pixels and h > pixels:
            found.append((a.get_text(), b.get_text()))
    return found


def covers_axes(fig: Figure, box: Bbox, pixels: float = 1.0) -> list[int]:
    """Indices of the figure's visible axes whose plotting area `box` covers."""
    renderer = fig.canvas.get_renderer()
    out = []
    for i, ax in enumerate(fig.axes):
        if ax.get_visible():
            w, h = _overlap(box, ax.get_window_extent(renderer))
            if w > pixels and h > pixels:
                out.append(i)
    return out
