"""The real collector against the real ground-truth workload: exact and statistical agreement.

The workload writes every 0.13 s and the collector samples every 0.1 s: incommensurate periods, so
the write rounds drift across the collector's windows instead of locking onto its reading spans
(where they would be ambiguous). Samples hold zero, one or two rounds; both checks account for it.
"""

from __future__ import annotations

import numpy as np
import pytest

from calm.analyzer.accuracy import binomial_comparison, exact_comparison, load_truth
from calm.trace.reader import Trace
from tests.collector_helpers import record_workload, row_of


@pytest.mark.parametrize("profile", ["uniform:0.1", "hotcold:0.2:0.5:0.02"])
def test_hash_backend_matches_truth(tmp_path, profile):
    out, truth_path, pid = record_workload(tmp_path, pages=2048, interval=0.13, duration=5,
                                           profile=profile)
    truth = load_truth(truth_path)
    with Trace(out) as trace:
        assert trace.info.backend == "hash"
        assert trace.info.status == "complete"
        row = row_of(trace, pid)
        exact = exact_comparison(trace, row, truth)
        stats = binomial_comparison(trace, row, truth)
    # Every round wholly inside a sample is seen page for page, and nothing else.
    assert exact.compared >= 20, exact
    assert exact.missed == 0 and exact.spurious == 0, exact
    assert stats.pages_checked >= 300, stats
    assert stats.outside <= stats.allowed, stats
    assert stats.total_ok, stats


@pytest.mark.parametrize("wrong", ["doubled", "shuffled"])
def test_statistical_check_catches_a_wrong_truth(tmp_path, wrong):
    """The checks are not vacuous: the same trace disagrees with a distorted truth."""
    out, truth_path, pid = record_workload(tmp_path, pages=2048, interval=0.13, duration=5,
                                           profile="hotcold:0.2:0.5:0.02")
    truth = load_truth(truth_path)
    with Trace(out) as trace:
        row = row_of(trace, pid)
        honest = binomial_comparison(trace, row, truth)
        if wrong == "doubled":
            truth.p = truth.p * 2
        else:
            truth.p = truth.p[:, np.random.default_rng(0).permutation(truth.pages)]
        distorted = binomial_comparison(trace, row, truth)
    assert honest.samples >= 20 and honest.pages_checked >= 300, honest
    assert honest.outside <= honest.allowed and honest.total_ok, honest
    if wrong == "doubled":
        assert not distorted.total_ok, distorted
    else:
        assert distorted.outside > distorted.allowed, distorted
