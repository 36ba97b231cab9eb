"""Analyzer: dirtying probabilities, rankings, heatmaps and ELF attribution from calm traces.

Python API: `analyze(trace_path) -> Analysis` (see `analyzer.model`); files and figures are
written by `analyzer.outputs` and `analyzer.plots`; `calm analyze` is `calm.cli.analyze`.
"""

from calm.analyzer.compute import analyze
from calm.analyzer.model import Analysis

__all__ = ["Analysis", "analyze"]
