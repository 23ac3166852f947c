"""The pooled metrics of many histograms at once: the bootstrap's replicates, as arrays.

``core.metrics`` defines every pooled metric on one ``LesionHistogram`` (and is checked
against scikit-learn and torchmetrics); a bootstrap scores a thousand replicate histograms
of each model, test set and lesion. ``HistogramStack`` holds them as rows of arrays and
``BATCHED_METRICS`` computes each metric of ``core.metrics.POOLED_METRICS`` for every row
with the same definitions, vectorised over the rows instead of one histogram object a
replicate (``benchmarks/bench_uncertainty.py``). Values equal ``core.metrics``'s up to the
order of floating-point sums.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

from lesionsoup.core.metrics import (
    CALIBRATION_BINS,
    DICE_THRESHOLD,
    ELEVEN_POINT_THRESHOLDS,
    POOLED_METRICS,
    SIZE_BINS,
    calibration_bin_of,
)


@dataclass(frozen=True)
class HistogramStack:
    """Rows of histograms with one bin count: ``positives`` and ``negatives`` (rows, bins + 1);
    ``decisions`` (rows, 4) and ``components`` (rows, size bins, 4) where recorded."""

    bins: int
    positives: np.ndarray
    negatives: np.ndarray
    decisions: np.ndarray | None = None
    components: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = (len(self.positives), self.bins + 1)
        if self.positives.shape != shape or self.negatives.shape != shape:
            raise ValueError(f"stacked counts must be {shape}, not {self.positives.shape}")

    @property
    def positive_pixels(self) -> np.ndarray:
        return self.positives.sum(axis=1)

    @property
    def negative_pixels(self) -> np.ndarray:
        return self.negatives.sum(axis=1)

    def from_top(self) -> tuple[np.ndarray, np.ndarray]:
        """TP and FP when every bin from the top down to k is predicted positive."""
        return (
            np.cumsum(self.positives[:, ::-1], axis=1)[:, ::-1],
            np.cumsum(self.negatives[:, ::-1], axis=1)[:, ::-1],
        )


def _divide(numerator: np.ndarray, denominator: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` where ``where``, NaN elsewhere."""
    out = np.full(np.broadcast_shapes(numerator.shape, denominator.shape), np.nan)
    return np.divide(numerator, denominator, out=out, where=where)


def _edge(bins: int, threshold: float) -> int:
    return round(threshold * bins)


def average_precision(stack: HistogramStack) -> np.ndarray:
    tp, fp = stack.from_top()
    hit = stack.positives > 0
    precision = np.divide(tp, tp + fp, out=np.zeros(tp.shape), where=hit)
    total = stack.positive_pixels
    steps = np.where(hit, stack.positives * precision, 0.0).sum(axis=1)
    return _divide(steps, total, total > 0)


def aupr_11_point(stack: HistogramStack) -> np.ndarray:
    tp, fp = stack.from_top()
    edges = [_edge(stack.bins, threshold) for threshold in ELEVEN_POINT_THRESHOLDS]
    tp, fp = tp[:, edges].astype(np.float64), fp[:, edges].astype(np.float64)
    predicted = tp + fp
    precision = np.divide(tp, predicted, out=np.ones(tp.shape), where=predicted > 0)
    total = stack.positive_pixels
    recall = _divide(tp, total[:, None], total[:, None] > 0)
    precision = np.concatenate([precision, np.ones((len(tp), 1))], axis=1)
    recall = np.concatenate([recall, np.zeros((len(tp), 1))], axis=1)
    area = ((recall[:, :-1] - recall[:, 1:]) * (precision[:, :-1] + precision[:, 1:]) / 2).sum(1)
    return np.where(total > 0, area, np.nan)


def auroc(stack: HistogramStack) -> np.ndarray:
    """The trapezoid area as the Mann-Whitney sum: each negative counts the positives in
    higher bins, and half of those in its own."""
    above = np.cumsum(stack.positives[:, ::-1], axis=1)[:, ::-1] - stack.positives / 2
    positives, negatives = stack.positive_pixels, stack.negative_pixels
    pairs = (positives * negatives).astype(np.float64)
    return _divide((stack.negatives * above).sum(axis=1), pairs, pairs > 0)


def dice(stack: HistogramStack) -> np.ndarray:
    if stack.decisions is not None:
        tp, fp, fn = (stack.decisions[:, k].astype(np.float64) for k in range(3))
    else:
        first = _edge(stack.bins, DICE_THRESHOLD)
        tp = stack.positives[:, first:].sum(axis=1).astype(np.float64)
        fp = stack.negatives[:, first:].sum(axis=1).astype(np.float64)
        fn = stack.positive_pixels - tp
    denominator = 2 * tp + fp + fn
    return _divide(2 * tp, denominator, denominator > 0)


@cache
def _calibration(bins: int, calibration_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The one-hot (bins + 1, calibration bins) map of ``calibration_bin_of`` and the
    histogram bins' centres, as ``core.metrics.reliability`` takes them."""
    which = calibration_bin_of(bins, calibration_bins)
    one_hot = np.zeros((bins + 1, calibration_bins))
    one_hot[np.arange(bins + 1), which] = 1.0
    return one_hot, np.append((np.arange(bins) + 0.5) / bins, 1.0)


def expected_calibration_error(stack: HistogramStack) -> np.ndarray:
    one_hot, centres = _calibration(stack.bins, CALIBRATION_BINS)
    counts = (stack.positives + stack.negatives).astype(np.float64)
    pixels = counts @ one_hot
    positives = stack.positives.astype(np.float64) @ one_hot
    mass = (counts * centres) @ one_hot
    occupied = pixels > 0
    gaps = np.abs(_divide(positives, pixels, occupied) - _divide(mass, pixels, occupied))
    total = pixels.sum(axis=1)
    weighted = np.where(occupied, pixels * np.nan_to_num(gaps), 0.0).sum(axis=1)
    return _divide(weighted, total, total > 0)


def _totals(stack: HistogramStack, size: str | None) -> np.ndarray | None:
    """Reference, detected, predicted and matched components (rows, 4), of a size or all."""
    if stack.components is None:
        return None
    counts = stack.components.astype(np.float64)
    return counts.sum(axis=1) if size is None else counts[:, SIZE_BINS.index(size)]


def _nan(stack: HistogramStack) -> np.ndarray:
    return np.full(len(stack.positives), np.nan)


def lesion_sensitivity(stack: HistogramStack) -> np.ndarray:
    totals = _totals(stack, None)
    return _nan(stack) if totals is None else _divide(totals[:, 1], totals[:, 0], totals[:, 0] > 0)


def lesion_precision(stack: HistogramStack) -> np.ndarray:
    totals = _totals(stack, None)
    return _nan(stack) if totals is None else _divide(totals[:, 3], totals[:, 2], totals[:, 2] > 0)


def _f1(stack: HistogramStack, size: str | None) -> np.ndarray:
    """As ``core.metrics._f1``: an undefined precision or recall counts 0 when the other is
    defined; NaN with neither reference nor predicted components."""
    totals = _totals(stack, size)
    if totals is None:
        return _nan(stack)
    recall = np.divide(
        totals[:, 1], totals[:, 0], out=np.zeros(len(totals)), where=totals[:, 0] > 0
    )
    precision = np.divide(
        totals[:, 3], totals[:, 2], out=np.zeros(len(totals)), where=totals[:, 2] > 0
    )
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(len(totals)), where=both > 0)
    return np.where((totals[:, 0] == 0) & (totals[:, 2] == 0), np.nan, f1)


def _f1_of(size: str | None) -> Callable[[HistogramStack], np.ndarray]:
    def metric(stack: HistogramStack) -> np.ndarray:
        return _f1(stack, size)

    return metric


#: ``core.metrics.POOLED_METRICS``, each computed for every row of a ``HistogramStack``.
BATCHED_METRICS: dict[str, Callable[[HistogramStack], np.ndarray]] = {
    "ap": average_precision,
    "aupr_11pt": aupr_11_point,
    "auroc": auroc,
    "dice_pooled": dice,
    "ece": expected_calibration_error,
    "lesion_sensitivity": lesion_sensitivity,
    "lesion_precision": lesion_precision,
    "lesion_f1": _f1_of(None),
    **{f"lesion_f1_{size}": _f1_of(size) for size in SIZE_BINS},
}
if BATCHED_METRICS.keys() != POOLED_METRICS.keys():  # one list of names: POOLED_METRICS'
    raise ImportError("BATCHED_METRICS must compute exactly core.metrics.POOLED_METRICS")
