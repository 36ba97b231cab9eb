"""The self-contained HTML report of a trace and its replay (`calm report`, `calm demo`).

`build_report(analysis, results)` returns the HTML; `load_results(path)` reads and checks a
results.json of `calm replay`. Figures are embedded as PNG data URIs and the CSS is inline, so the
file opens anywhere without fetching anything.
"""

from calm.report.build import build_report, write_report
from calm.report.replay_results import load_results

__all__ = ["build_report", "load_results", "write_report"]
