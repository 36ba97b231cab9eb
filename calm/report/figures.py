"""Figures of the report, rendered to PNG in memory and embedded as data: URIs.

Why PNG data URIs: the report must be one file that opens anywhere without fetching anything;
PNGs of a few tens of KB render identically in every browser, and the heavy meshes (heatmaps)
would be rasterized inside an SVG anyway. The analysis figures are the analyzer's own
(`calm.analyzer.plots.FIGURES`) and the replay figures the replay's own
(`calm.replay.plots.FIGURES`, drawn from results.json alone), so `calm analyze`, `calm replay` and
the report never disagree and the report draws nothing itself.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 96


@dataclass
class Image:
    """An embedded figure: a data: URI and its pixel size (for the <img> width/height)."""

    uri: str
    width: int
    height: int


def to_image(fig: Figure) -> Image:
    """Renders and closes `fig`."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    data = buf.getvalue()
    width = int.from_bytes(data[16:20], "big")  # the PNG IHDR chunk
    height = int.from_bytes(data[20:24], "big")
    return Image("data:image/png;base64," + base64.b64encode(data).decode("ascii"), width, height)


def analysis_images(analysis, names) -> dict[str, Image]:
    """The analyzer's figures `names` (keys of analyzer.plots.FIGURES) as embedded images."""
    from calm.analyzer.plots import FIGURES

    return {name: to_image(FIGURES[name](analysis)) for name in names}


def replay_images(results: dict) -> dict[str, Image]:
    """The replay's own figures (calm.replay.plots.FIGURES) that have data, as embedded images."""
    from calm.replay.plots import FIGURES

    images = {}
    for name, (draw, _) in FIGURES.items():
        fig = draw(results)
        if fig is not None:
            images[name] = to_image(fig)
    return images
