"""Every pooled metric computed for many histograms at once equals core.metrics' own, one
histogram at a time (itself checked against scikit-learn and torchmetrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lesionsoup.core.batched_metrics import BATCHED_METRICS, HistogramStack
from lesionsoup.core.metrics import POOLED_METRICS, Confusion, LesionHistogram

BINS = 40


def random_histograms(rng: np.random.Generator, rows: int, decided: bool, counted: bool):
    """Random histograms, some without positives, some without negatives, one empty."""
    positives = rng.poisson(rng.uniform(0, 3, (rows, 1)), (rows, BINS + 1))
    negatives = rng.poisson(rng.uniform(0, 30, (rows, 1)), (rows, BINS + 1))
    positives[0], negatives[1], positives[2], negatives[2] = 0, 0, 0, 0
    histograms = []
    decisions, components = [], []
    for p, n in zip(positives, negatives, strict=True):
        tp, fp = int(rng.integers(0, p.sum() + 1)), int(rng.integers(0, n.sum() + 1))
        decision = Confusion(tp, fp, int(p.sum()) - tp, int(n.sum()) - fp)
        counts = rng.integers(0, 4, (3, 4))
        counts[:, 1] = np.minimum(counts[:, 1], counts[:, 0])
        counts[:, 3] = np.minimum(counts[:, 3], counts[:, 2])
        counts[0] = 0 if rng.random() < 0.3 else counts[0]
        decisions.append(decision)
        components.append(counts)
        histograms.append(
            LesionHistogram(BINS, p, n, decision if decided else None, counts if counted else None)
        )
    stack = HistogramStack(
        BINS,
        positives,
        negatives,
        np.array(decisions) if decided else None,
        np.array(components) if counted else None,
    )
    return histograms, stack


@pytest.mark.parametrize(("decided", "counted"), [(False, False), (True, True)])
def test_batched_metrics_equal_the_one_histogram_definitions(decided: bool, counted: bool):
    histograms, stack = random_histograms(np.random.default_rng(3), 60, decided, counted)
    for name, metric in POOLED_METRICS.items():
        batched = BATCHED_METRICS[name](stack)
        expected = np.array([metric(h) for h in histograms])
        assert batched.shape == expected.shape
        assert np.array_equal(np.isnan(batched), np.isnan(expected)), name
        finite = ~np.isnan(expected)
        assert batched[finite] == pytest.approx(expected[finite], abs=1e-12), name
    assert math.isnan(BATCHED_METRICS["ap"](stack)[0])  # no positives
    assert math.isnan(BATCHED_METRICS["auroc"](stack)[1])  # no negatives
