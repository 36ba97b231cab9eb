"""Analyzer: dirtying probabilities, rankings, heatmaps and ELF attribution from calm traces."""
