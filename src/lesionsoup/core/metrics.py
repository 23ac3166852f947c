"""Segmentation metrics computed exactly from histograms of predicted probabilities.

Evaluation never keeps pixel scores. For each lesion it counts the valid pixels
that are positive and negative in the ground truth, per probability bin
(``LesionHistogram``); histograms of several images, models or test sets merge
by addition, and every pooled metric (average precision, 11-point AUPR, Dice,
AUROC, the PR curve, the expected calibration error and its reliability diagram)
follows from the counts alone, in O(bins) memory. The lesion-wise metrics (sensitivity,
precision and F1 over connected components, and F1 per size bin) follow likewise from
each histogram's component counts (``LesionHistogram.components``,
``lesionsoup.core.lesion_components``).

Binning: with ``bins`` uniform bins, bin ``k < bins`` holds probabilities in
``[k / bins, (k + 1) / bins)`` and one extra bin, index ``bins``, holds exactly
1.0 (float32 sigmoids saturate there), so the bin index is ``floor(p * bins)``.
A threshold ``t`` is exact when ``t * bins`` is an integer: "p >= t" is then
"bin >= t * bins". The default of 2000 bins (at least 1024, and a multiple of
ten) puts every threshold the metrics use (0.0, 0.1, ..., 1.0) on a bin edge.
Probabilities are compared with the thresholds exactly: ``p * bins`` is exact in
float64 for float32 and float16 probabilities (a float64 probability within a
rounding error below an edge may land in the bin above). NumPy 2 compares a
float32 array with a Python float in float32, so ``probs >= 0.7`` on float32
probabilities would also count the single value float32(0.7) < 0.7 (likewise for
0.9); torchmetrics does too, its thresholds ``torch.linspace(0, 1, 11)`` being
float32. On float32 probabilities the 11-point AUPR here and torchmetrics' differ
only through pixels at exactly float32(0.7) or float32(0.9).

``conventions`` states every rule in words; the evaluation stage writes it next
to the numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.lesion_components import (
    COMPONENT_COUNTS,
    SIZE_BINS,
    empty_counts,
    size_bins_in_words,
)
from lesionsoup.core.lesions import FOV_BIT, IGNORE_BIT, Lesion

DEFAULT_BINS = 2000
#: Probability at and above which a pixel is predicted positive for Dice and per-image counts.
DICE_THRESHOLD = 0.5
#: ``evaluation.labels``: each lesion's own mask, or the softmax head's priority label map.
LABELS: tuple[str, ...] = ("multilabel", "priority")
#: The thresholds of the 11-point AUPR, as published IDRiD and DDR results use it.
ELEVEN_POINT_THRESHOLDS: tuple[float, ...] = tuple(k / 10 for k in range(11))
#: What each metric of ``metrics.csv`` is called in figures and tables.
METRIC_LABELS: dict[str, str] = {
    "ap": "AP",
    "aupr_11pt": "AUPR (11-point)",
    "auroc": "AUROC",
    "dice_pooled": "Dice (pooled pixels)",
    "ece": "ECE",
    "positive_pixels": "positive pixels",
    "valid_pixels": "valid pixels",
    "dice_image_mean": "Dice (mean over images)",
    "images_with_lesion": "images with the lesion",
    "fp_rate_image_mean": "false-positive rate (mean over images)",
    "images_without_lesion": "images without the lesion",
    "lesion_sensitivity": "lesion-wise sensitivity",
    "lesion_precision": "lesion-wise precision",
    "lesion_f1": "lesion-wise F1",
    **{f"lesion_f1_{size}": f"lesion-wise F1 ({size} lesions)" for size in SIZE_BINS},
}
#: Equal-width bins of predicted probability of the expected calibration error: 10, not
#: the 15 of Guo et al. 2017, so that every calibration edge is a threshold edge (0.0, 0.1,
#: ..., 1.0), which the default bins and the per-image groups of the bootstrap keep.
CALIBRATION_BINS = 10
#: Pixels binned per step of ``LesionHistogram.update``: its temporaries (about
#: 16 bytes a pixel) then stay in the CPU cache, which measured faster than larger steps.
_CHUNK_PIXELS = 1 << 16


_LABEL_RULES = {
    "multilabel": (
        "Each lesion is scored against its own mask (a pixel may be positive for several "
        "lesions); its hard prediction is p >= {threshold}."
    ),
    "priority": (
        "Each lesion is scored against the priority label map the softmax head trains on "
        "(lesionsoup.core.lesions.SOFTMAX_PRIORITY: MA over HE over EX over CWS): positive "
        "where the map holds the lesion. Histograms use the lesion's probability; the hard "
        "prediction is the argmax over the background (1 - the sum of the lesion "
        "probabilities) and the lesions, a tie going to the background, then to the first "
        "lesion in model order."
    ),
}


def _prediction(labels: str) -> str:
    return "p >= 0.5" if labels == "multilabel" else "the argmax (see labels)"


#: The rule texts of ``conventions`` other than ``labels``, formatted there with
#: ``bins``, ``prediction`` (``_prediction``), ``calibration_bins`` and ``size_bins``.
_CONVENTION_RULES = {
    "valid_pixels": "Only pixels inside the field of view and without the ignore bit count.",
    "pooling": (
        "Pooled metrics count the valid pixels of the whole test set together; an image "
        "listed twice counts twice."
    ),
    "bins": (
        "{bins} uniform probability bins [k/{bins}, (k+1)/{bins}) plus one bin for p == 1.0; "
        "average precision, AUROC and the PR curve are exact for scores rounded down to the "
        "bin edge."
    ),
    "average_precision": (
        "Step-wise: sum over thresholds from high to low of (R_k - R_(k-1)) * P_k, as "
        "sklearn.metrics.average_precision_score on the binned scores. NaN without positives."
    ),
    "aupr_11_point": (
        "Precision and recall at thresholds 0.0, 0.1, ..., 1.0 (p >= t is positive; "
        "precision is 1.0 where nothing is predicted positive), then the end point "
        "(recall 0, precision 1); trapezoid area over recall through the points in threshold "
        "order: torchmetrics.utilities.compute.auc(recall, precision) of "
        "binary_precision_recall_curve(thresholds=11), as the paper's authors compute AUPR. "
        "NaN without positives."
    ),
    "auroc": "Trapezoid area under the binned ROC curve. NaN without positives or negatives.",
    "dice_pooled": (
        "2TP / (2TP + FP + FN) over the pooled pixels, {prediction} is positive. "
        "NaN when there are neither positives nor predicted positives."
    ),
    "ece": (
        "Expected calibration error (Guo et al. 2017) over the pooled valid pixels, in "
        "{calibration_bins} equal-width probability bins: the sum over bins of the bin's "
        "share of pixels times |fraction positive - mean predicted probability|; each "
        "pixel's probability is its histogram bin's centre (error at most 1/(2*{bins})). "
        "NaN without valid pixels."
    ),
    "per_image": (
        "Per image, {prediction} is positive. Dice is averaged over the images "
        "that have the lesion (at least one positive valid pixel); the false-positive rate "
        "(FP / valid pixels) is averaged over the images that have none (empty mask); an "
        "image without valid pixels enters neither mean."
    ),
    "lesion_wise": (
        "Lesions are the 8-connected components of the reference mask and of the hard "
        "prediction ({prediction}), both restricted to the valid pixels, at the "
        "evaluation resolution (lesionsoup.core.lesion_components). Match rule (Metrics "
        "Reloaded's mask-overlap criterion, many-to-one allowed): a reference lesion is "
        "detected when any of its pixels is predicted; a predicted lesion is matched when "
        "any of its pixels is a reference pixel, so one prediction touching two lesions "
        "detects both and is one matched prediction. Components of all images are pooled: "
        "lesion_sensitivity = detected / reference lesions (NaN without any), "
        "lesion_precision = matched / predicted lesions (NaN without any), lesion_f1 = "
        "2PR / (P + R), an undefined P or R read as 0 when the other is defined (0 when "
        "both are 0), NaN with neither reference nor predicted lesions."
    ),
    "lesion_size_bins": (
        "lesion_f1_<bin> is lesion_f1 of the components whose own area in pixels falls "
        "in the bin (reference lesions for recall, predicted lesions for precision; a "
        "prediction may match a lesion of another bin): {size_bins}."
    ),
}


def conventions(bins: int = DEFAULT_BINS, labels: str = "multilabel") -> dict[str, str]:
    """The rules behind every number this module computes, in words (``labels``: ``LABELS``)."""
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {list(LABELS)}, not {labels!r}")
    values = {
        "bins": bins,
        "prediction": _prediction(labels),
        "calibration_bins": CALIBRATION_BINS,
        "size_bins": size_bins_in_words(),
    }
    rules = {name: text.format(**values) for name, text in _CONVENTION_RULES.items()}
    return {"labels": _LABEL_RULES[labels].format(threshold=DICE_THRESHOLD), **rules}


def metric_label(metric: str) -> str:
    """The name figures and tables give a metric of ``metrics.csv`` (unknown: as is)."""
    return METRIC_LABELS.get(metric, metric)


def valid_mask(labels: np.ndarray) -> np.ndarray:
    """Pixels every metric counts: inside the field of view and not marked ignore."""
    return ((labels & FOV_BIT) != 0) & ((labels & IGNORE_BIT) == 0)


class Confusion(NamedTuple):
    tp: int
    fp: int
    fn: int
    tn: int


def _check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    return int(bins)


def _check_inputs(probs: np.ndarray, target: np.ndarray, valid: np.ndarray) -> None:
    if not np.issubdtype(probs.dtype, np.floating):
        raise TypeError(f"probabilities must be floating point, got {probs.dtype}")
    for name, mask in (("target", target), ("valid", valid)):
        if mask.dtype != np.bool_:
            raise TypeError(f"{name} must be a boolean array, got {mask.dtype}")
        if mask.shape != probs.shape:
            raise ValueError(f"{name} shape {mask.shape} differs from probabilities {probs.shape}")


def _check_range(probs: np.ndarray, valid: np.ndarray) -> None:
    """Probabilities of valid pixels must lie in [0, 1]; invalid pixels may hold anything."""
    with np.errstate(invalid="ignore"):
        if probs.size == 0 or (probs.min() >= 0 and probs.max() <= 1):
            return
        low = np.min(probs, where=valid, initial=0.0)
        high = np.max(probs, where=valid, initial=1.0)
        if np.isnan(probs[valid]).any() or low < 0 or high > 1:
            raise ValueError(f"probabilities of valid pixels must lie in [0, 1], not {low}..{high}")


def argmax_decisions(
    classes: np.ndarray, labels: np.ndarray, lesions: Sequence[Lesion]
) -> list[Confusion]:
    """Per lesion ``k``, the valid-pixel counts of ``classes == k + 1`` (0 = background)
    against the lesion's bit of ``labels``, the (H, W) label plane."""
    valid = valid_mask(labels)
    counts = []
    for k, lesion in enumerate(lesions):
        truth, predicted = (labels & lesion.bit) != 0, classes == k + 1
        tp = int(np.count_nonzero(truth & predicted & valid))
        fp = int(np.count_nonzero(~truth & predicted & valid))
        fn = int(np.count_nonzero(truth & ~predicted & valid))
        counts.append(Confusion(tp, fp, fn, int(np.count_nonzero(valid)) - tp - fp - fn))
    return counts


class LesionHistogram:
    """Positive and negative valid-pixel counts per probability bin, for one lesion.

    ``positives[k]`` and ``negatives[k]`` count the pixels whose probability falls
    in bin ``k`` (``bins + 1`` entries, see the module docstring), as int64.
    ``decisions`` are the pixel counts of the model's hard prediction when it is not
    ``p >= DICE_THRESHOLD`` (the argmax over classes of ``evaluation.labels: priority``);
    None means that threshold (``predicted``). ``components`` are the lesion-wise counts
    of the hard prediction (``lesionsoup.core.lesion_components.component_counts``: per
    size bin, reference, detected, predicted and matched components), None where they
    were not counted (the lesion-wise metrics are then NaN).
    """

    def __init__(
        self,
        bins: int = DEFAULT_BINS,
        positives: np.ndarray | None = None,
        negatives: np.ndarray | None = None,
        decisions: Sequence[int] | None = None,
        components: np.ndarray | Sequence[Sequence[int]] | None = None,
    ) -> None:
        self.bins = _check_bins(bins)
        size = self.bins + 1
        self.positives = np.zeros(size, np.int64) if positives is None else np.array(positives)
        self.negatives = np.zeros(size, np.int64) if negatives is None else np.array(negatives)
        for name, counts in (("positives", self.positives), ("negatives", self.negatives)):
            if counts.shape != (size,) or not np.issubdtype(counts.dtype, np.integer):
                raise ValueError(f"{name} must be {size} integer counts for {self.bins} bins")
            if (counts < 0).any():
                raise ValueError(f"{name} must not be negative")
        self.positives = self.positives.astype(np.int64)
        self.negatives = self.negatives.astype(np.int64)
        self.decisions = None if decisions is None else Confusion(*map(int, decisions))
        if self.decisions is not None and (
            min(self.decisions) < 0
            or self.decisions.tp + self.decisions.fn != self.positive_pixels
            or self.decisions.fp + self.decisions.tn != int(self.negatives.sum())
        ):
            raise ValueError(
                f"decisions {tuple(self.decisions)} do not count the histogram's "
                f"{self.positive_pixels} positive and {int(self.negatives.sum())} negative pixels"
            )
        self.components = None if components is None else _checked_components(components)

    def update(self, probs: np.ndarray, target: np.ndarray, valid: np.ndarray) -> None:
        """Add the valid pixels of an image (H, W), a stack (N, H, W) or any array of pixels.

        ``probs`` are floating point probabilities (in [0, 1] where valid),
        ``target`` the boolean ground truth, ``valid`` the boolean mask of the
        pixels that count (see ``valid_mask``).
        """
        probs, target, valid = np.asarray(probs), np.asarray(target), np.asarray(valid)
        _check_inputs(probs, target, valid)
        _check_range(probs, valid)
        probs, target, valid = probs.reshape(-1), target.reshape(-1), valid.reshape(-1)
        # key = 2 * bin + target, shifted by 2 so that invalid pixels (key * 0) land in slot 0
        slots = 2 * (self.bins + 2)
        counts = np.zeros(slots, np.int64)
        for start in range(0, probs.size, _CHUNK_PIXELS):
            window = slice(start, start + _CHUNK_PIXELS)
            # a float32 or float16 probability times bins is exact in float64
            with np.errstate(invalid="ignore"):
                keys = np.multiply(probs[window], self.bins, dtype=np.float64).astype(np.intp)
            keys <<= 1
            keys |= target[window]
            keys += 2
            keys *= valid[window]
            counts += np.bincount(keys, minlength=slots)
        self.negatives += counts[2::2]
        self.positives += counts[3::2]

    @property
    def positive_pixels(self) -> int:
        return int(self.positives.sum())

    @property
    def valid_pixels(self) -> int:
        return int(self.positives.sum() + self.negatives.sum())

    def threshold_bin(self, threshold: float) -> int:
        """The first bin predicted positive at ``threshold``; it must lie on a bin edge."""
        position = threshold * self.bins
        edge = round(position)
        if not 0 <= threshold <= 1 or abs(position - edge) > 1e-9 * self.bins:
            raise ValueError(f"threshold {threshold} is not a bin edge of {self.bins} bins")
        return edge

    def confusion(self, threshold: float = DICE_THRESHOLD) -> Confusion:
        """Pixel counts when ``p >= threshold`` is predicted positive."""
        first = self.threshold_bin(threshold)
        tp, fp = int(self.positives[first:].sum()), int(self.negatives[first:].sum())
        return Confusion(tp, fp, self.positive_pixels - tp, int(self.negatives.sum()) - fp)

    def _decided(self) -> Confusion:
        """The decisions to merge; an empty histogram (nothing binned yet) has none to add."""
        if self.decisions is None and self.valid_pixels:
            raise ValueError("cannot merge histograms with and without argmax decisions")
        return self.decisions or Confusion(0, 0, 0, 0)

    def _counted(self) -> np.ndarray:
        """The components to merge; an empty histogram has none to add."""
        if self.components is None and self.valid_pixels:
            raise ValueError("cannot merge histograms with and without lesion-wise counts")
        return empty_counts() if self.components is None else self.components

    def predicted(self) -> Confusion:
        """Pixel counts of the hard prediction Dice and the per-image counts use."""
        return self.decisions if self.decisions is not None else self.confusion(DICE_THRESHOLD)

    def __add__(self, other: LesionHistogram) -> LesionHistogram:
        if not isinstance(other, LesionHistogram):
            return NotImplemented
        if other.bins != self.bins:
            raise ValueError(f"cannot merge histograms of {self.bins} and {other.bins} bins")
        decisions = None
        if self.decisions is not None or other.decisions is not None:
            pairs = zip(self._decided(), other._decided(), strict=True)
            decisions = Confusion(*(a + b for a, b in pairs))
        components = None
        if self.components is not None or other.components is not None:
            components = self._counted() + other._counted()
        return LesionHistogram(
            self.bins,
            self.positives + other.positives,
            self.negatives + other.negatives,
            decisions,
            components,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LesionHistogram):
            return NotImplemented
        return (
            self.bins == other.bins
            and np.array_equal(self.positives, other.positives)
            and np.array_equal(self.negatives, other.negatives)
            and self.decisions == other.decisions
            and (self.components is None) == (other.components is None)
            and (self.components is None or np.array_equal(self.components, other.components))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"LesionHistogram(bins={self.bins}, positive_pixels={self.positive_pixels}, "
            f"valid_pixels={self.valid_pixels})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form: the bin count, both count arrays as lists of ints, the
        decisions (tp, fp, fn, tn) and the components (a list per size bin) where there are
        some."""
        entry: dict[str, Any] = {
            "bins": self.bins,
            "positives": self.positives.tolist(),
            "negatives": self.negatives.tolist(),
        }
        if self.decisions is not None:
            entry["decisions"] = list(self.decisions)
        if self.components is not None:
            entry["components"] = self.components.tolist()
        return entry

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LesionHistogram:
        """The inverse of ``to_dict``; raises ValueError on anything malformed."""
        try:
            bins, positives, negatives = data["bins"], data["positives"], data["negatives"]
            decisions, components = data.get("decisions"), data.get("components")
            cells = [x for row in components or () for x in row]
            integers = all(
                type(x) is int for x in (*positives, *negatives, *(decisions or ()), *cells)
            )
        except (KeyError, TypeError) as error:
            message = f"histogram needs 'bins', 'positives' and 'negatives' ({error})"
            raise ValueError(message) from None
        if not integers:
            raise ValueError("histogram counts must be integers")
        if decisions is not None and len(decisions) != 4:
            raise ValueError("histogram decisions must be four counts: tp, fp, fn, tn")
        return cls(
            bins,
            np.array(positives, np.int64),
            np.array(negatives, np.int64),
            decisions,
            None if components is None else np.array(components, np.int64),
        )


def _checked_components(components: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
    """Lesion-wise counts (size bins, ``COMPONENT_COUNTS``) as int64, checked."""
    counts = np.array(components)
    shape = (len(SIZE_BINS), len(COMPONENT_COUNTS))
    if counts.shape != shape or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"components must be {shape} integer counts ({COMPONENT_COUNTS})")
    counts = counts.astype(np.int64)
    if (
        (counts < 0).any()
        or (counts[:, 1] > counts[:, 0]).any()
        or (counts[:, 3] > counts[:, 2]).any()
    ):
        raise ValueError(
            f"components {counts.tolist()} must not be negative, nor count more detected "
            "(matched) than reference (predicted) components"
        )
    return counts


def _counts_from_top(histogram: LesionHistogram) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP when every bin from the top down to k is predicted positive, for each k."""
    tp = np.cumsum(histogram.positives[::-1])[::-1]
    fp = np.cumsum(histogram.negatives[::-1])[::-1]
    return tp, fp


def average_precision(histogram: LesionHistogram) -> float:
    """Step-wise average precision, sum of (R_k - R_(k-1)) * P_k; NaN without positives.

    Equals ``sklearn.metrics.average_precision_score`` on the binned scores.
    """
    total = histogram.positive_pixels
    if total == 0:
        return math.nan
    tp, fp = _counts_from_top(histogram)
    hit = histogram.positives > 0  # only thresholds that add positives move recall
    recall_step = histogram.positives[hit] / total
    return float(np.sum(recall_step * (tp[hit] / (tp[hit] + fp[hit]))))


def precision_recall_at(
    histogram: LesionHistogram, thresholds: Iterable[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall with ``p >= t`` predicted positive, for each threshold.

    Precision is 1.0 where nothing is predicted positive; recall is NaN without positives.
    """
    total = histogram.positive_pixels
    precision, recall = [], []
    for threshold in thresholds:
        tp, fp, _, _ = histogram.confusion(threshold)
        precision.append(tp / (tp + fp) if tp + fp else 1.0)
        recall.append(tp / total if total else math.nan)
    return np.array(precision), np.array(recall)


def aupr_11_point(histogram: LesionHistogram) -> float:
    """Area under the 11-threshold precision-recall curve, as the paper's authors compute it.

    The curve is torchmetrics' ``binary_precision_recall_curve(preds, target,
    thresholds=11)``: precision and recall at t = 0.0, 0.1, ..., 1.0 (``p >= t`` is
    positive), then the end point (recall 0, precision 1); precision is 1.0 where
    nothing is predicted positive (torchmetrics >= 1.8.2 gives NaN there, earlier
    versions 0), which makes those points the end point. The area is the trapezoid
    rule along the points in threshold order, ``torchmetrics.utilities.compute.auc(
    recall, precision.nan_to_num(1.0))`` and ``sklearn.metrics.auc(recall, precision)``.
    (``BinaryAveragePrecision(thresholds=11)`` is another number: the step sum
    ``sum((R_k - R_(k+1)) * P_k)`` along the same points, NaN precision read as 0.)

    The authors (MultiStyle_FundusLesionSegmentation, ``models/utils/metric.py``) sort
    the points by recall before ``torch.trapezoid``; that is the same area unless two
    consecutive points share a recall while the lower threshold predicts some pixel
    positive (no positive pixel between the two thresholds): the order a sort gives
    tied recalls then decides which precision bounds the next segment, and here the
    threshold order does. NaN without positives.
    """
    if histogram.positive_pixels == 0:
        return math.nan
    precision, recall = precision_recall_at(histogram, ELEVEN_POINT_THRESHOLDS)
    precision, recall = np.append(precision, 1.0), np.append(recall, 0.0)
    return float(np.sum((recall[:-1] - recall[1:]) * (precision[:-1] + precision[1:]) / 2))


def auroc(histogram: LesionHistogram) -> float:
    """Trapezoid area under the binned ROC curve; NaN without positives or negatives.

    Equals ``sklearn.metrics.roc_auc_score`` on the binned scores.
    """
    positives, negatives = histogram.positive_pixels, int(histogram.negatives.sum())
    if positives == 0 or negatives == 0:
        return math.nan
    tp, fp = _counts_from_top(histogram)
    tpr = np.concatenate([[0.0], tp[::-1] / positives])
    fpr = np.concatenate([[0.0], fp[::-1] / negatives])
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def dice(histogram: LesionHistogram) -> float:
    """Pooled Dice 2TP / (2TP + FP + FN) of the hard prediction (``predicted``); NaN with
    neither positives nor predictions."""
    tp, fp, fn, _ = histogram.predicted()
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else math.nan


@dataclass(frozen=True)
class PRCurve:
    """Precision and recall at each occupied bin's lower edge, thresholds increasing."""

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray


def pr_curve(histogram: LesionHistogram) -> PRCurve:
    """The precision-recall curve for plotting, one point per bin that holds pixels.

    Recall is NaN without positives.
    """
    tp, fp = _counts_from_top(histogram)
    occupied = (histogram.positives + histogram.negatives) > 0
    total = histogram.positive_pixels
    tp, fp = tp[occupied], fp[occupied]
    recall = tp / total if total else np.full(tp.shape, math.nan)
    return PRCurve(
        precision=tp / (tp + fp),
        recall=recall,
        thresholds=np.flatnonzero(occupied) / histogram.bins,
    )


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's points, one per calibration bin (``edges``: their bounds).

    ``pixels`` and ``positives`` count each bin's valid pixels; ``confidence`` is their
    mean predicted probability and ``accuracy`` their fraction positive (NaN in empty bins).
    """

    edges: np.ndarray
    pixels: np.ndarray
    positives: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray


def calibration_bin_of(bins: int, calibration_bins: int = CALIBRATION_BINS) -> np.ndarray:
    """The calibration bin of each of the ``bins + 1`` histogram bins: the one holding its
    centre (the top bin, p == 1.0, in the last); exact when ``bins`` is a multiple of
    ``calibration_bins``, as no histogram bin then straddles a calibration edge."""
    _check_bins(calibration_bins)
    centres_twice = 2 * np.arange(bins + 1, dtype=np.int64) + 1  # 2 * bins * centre
    return np.minimum(centres_twice * calibration_bins // (2 * bins), calibration_bins - 1)


def reliability(
    histogram: LesionHistogram, calibration_bins: int = CALIBRATION_BINS
) -> Reliability:
    """Each calibration bin's pixels, mean predicted probability and fraction positive.

    A pixel's probability is taken as its histogram bin's centre ``(k + 0.5) / bins``
    (1.0 for the top bin, which holds exactly 1.0): each bin's mean predicted
    probability is within ``1 / (2 * bins)`` of that of the raw probabilities.
    """
    bins = histogram.bins
    centres = np.append((np.arange(bins) + 0.5) / bins, 1.0)
    which = calibration_bin_of(bins, calibration_bins)
    counts = histogram.positives + histogram.negatives
    pixels = np.bincount(which, weights=counts, minlength=calibration_bins)
    positives = np.bincount(which, weights=histogram.positives, minlength=calibration_bins)
    mass = np.bincount(which, weights=counts * centres, minlength=calibration_bins)
    occupied = pixels > 0
    share = np.divide(1.0, pixels, out=np.full(calibration_bins, np.nan), where=occupied)
    return Reliability(
        np.linspace(0.0, 1.0, calibration_bins + 1),
        pixels.astype(np.int64),
        positives.astype(np.int64),
        mass * share,
        positives * share,
    )


def expected_calibration_error(
    histogram: LesionHistogram, calibration_bins: int = CALIBRATION_BINS
) -> float:
    """Expected calibration error (Guo et al. 2017), equal-width bins; NaN without pixels.

    Sum over calibration bins of (bin pixels / all pixels) * |fraction positive - mean
    predicted probability|. Probabilities are histogram bin centres (``reliability``),
    so the result is within ``1 / (2 * bins)`` of the ECE of the raw probabilities when
    ``bins`` is a multiple of ``calibration_bins`` (the triangle inequality, bin by bin).
    """
    points = reliability(histogram, calibration_bins)
    total = int(points.pixels.sum())
    if total == 0:
        return math.nan
    occupied = points.pixels > 0
    gaps = np.abs(points.accuracy[occupied] - points.confidence[occupied])
    return float(np.sum(points.pixels[occupied] / total * gaps))


def _component_totals(histogram: LesionHistogram, size: str | None) -> np.ndarray | None:
    """Reference, detected, predicted and matched components, of one size bin or all."""
    if histogram.components is None:
        return None
    counts = histogram.components
    return counts.sum(axis=0) if size is None else counts[SIZE_BINS.index(size)]


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan


def lesion_sensitivity(histogram: LesionHistogram) -> float:
    """Detected reference lesions / reference lesions; NaN without any (or without counts)."""
    totals = _component_totals(histogram, None)
    return math.nan if totals is None else _ratio(int(totals[1]), int(totals[0]))


def lesion_precision(histogram: LesionHistogram) -> float:
    """Matched predicted lesions / predicted lesions; NaN without any (or without counts)."""
    totals = _component_totals(histogram, None)
    return math.nan if totals is None else _ratio(int(totals[3]), int(totals[2]))


def _f1(totals: np.ndarray | None) -> float:
    """2PR / (P + R); an undefined P or R counts 0 when the other is defined; NaN with
    neither reference nor predicted components (or without counts)."""
    if totals is None or (totals[0] == 0 and totals[2] == 0):
        return math.nan
    recall = totals[1] / totals[0] if totals[0] else 0.0
    precision = totals[3] / totals[2] if totals[2] else 0.0
    return float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0


def lesion_f1(histogram: LesionHistogram) -> float:
    """Lesion-wise F1 over all sizes (``conventions``: lesion_wise)."""
    return _f1(_component_totals(histogram, None))


def lesion_f1_of_size(size: str) -> Callable[[LesionHistogram], float]:
    """Lesion-wise F1 of the components of one size bin (``SIZE_BINS``)."""
    if size not in SIZE_BINS:
        raise ValueError(f"size bin must be one of {list(SIZE_BINS)}, not {size!r}")

    def metric(histogram: LesionHistogram) -> float:
        return _f1(_component_totals(histogram, size))

    metric.__name__ = metric.__qualname__ = f"lesion_f1_{size}"
    return metric


#: The metrics of a pooled histogram, by the names ``metrics.csv`` uses.
POOLED_METRICS: dict[str, Callable[[LesionHistogram], float]] = {
    "ap": average_precision,
    "aupr_11pt": aupr_11_point,
    "auroc": auroc,
    "dice_pooled": dice,
    "ece": expected_calibration_error,
    "lesion_sensitivity": lesion_sensitivity,
    "lesion_precision": lesion_precision,
    "lesion_f1": lesion_f1,
    **{f"lesion_f1_{size}": lesion_f1_of_size(size) for size in SIZE_BINS},
}


def pooled_metrics(histogram: LesionHistogram) -> dict[str, float]:
    """Every pooled metric of one lesion, by the names ``metrics.csv`` uses."""
    return {
        **{name: metric(histogram) for name, metric in POOLED_METRICS.items()},
        "positive_pixels": float(histogram.positive_pixels),
        "valid_pixels": float(histogram.valid_pixels),
    }


@dataclass(frozen=True)
class ImageCounts:
    """Pixel counts of one (image, lesion) at the Dice threshold."""

    image_id: str
    lesion: str
    tp: int
    fp: int
    fn: int
    tn: int

    @classmethod
    def from_histogram(
        cls, image_id: str, lesion: Lesion | str, histogram: LesionHistogram
    ) -> ImageCounts:
        return cls(image_id, Lesion(lesion).value, *histogram.predicted())

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def valid(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def dice(self) -> float:
        """Dice of this image; NaN when it has no positive pixel (the empty-mask rule)."""
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.positives else math.nan

    @property
    def fp_rate(self) -> float:
        """False-positive pixels per valid pixel; NaN without valid pixels."""
        return self.fp / self.valid if self.valid else math.nan


def per_image_metrics(counts: Iterable[ImageCounts]) -> dict[str, float]:
    """Means over the images of one lesion, following the empty-mask rule.

    Dice is averaged over images with positives, the false-positive rate over
    images with valid pixels but no positive; a mean over no image is NaN.
    """
    counts = list(counts)
    if len({c.lesion for c in counts}) > 1:
        raise ValueError("per-image metrics mix lesions; pass the counts of one lesion")
    dices = [c.dice for c in counts if c.positives > 0]
    fp_rates = [c.fp_rate for c in counts if c.positives == 0 and c.valid > 0]
    return {
        "dice_image_mean": float(np.mean(dices)) if dices else math.nan,
        "images_with_lesion": float(len(dices)),
        "fp_rate_image_mean": float(np.mean(fp_rates)) if fp_rates else math.nan,
        "images_without_lesion": float(len(fp_rates)),
    }


class SegmentationHistograms:
    """One ``LesionHistogram`` per lesion, all with the same bins; merges by addition."""

    def __init__(self, lesions: Iterable[Lesion | str], bins: int = DEFAULT_BINS) -> None:
        self.bins = _check_bins(bins)
        self.histograms: dict[Lesion, LesionHistogram] = {
            Lesion(lesion): LesionHistogram(self.bins) for lesion in lesions
        }
        if not self.histograms:
            raise ValueError("SegmentationHistograms needs at least one lesion")

    @property
    def lesions(self) -> tuple[Lesion, ...]:
        return tuple(self.histograms)

    def __getitem__(self, lesion: Lesion | str) -> LesionHistogram:
        return self.histograms[Lesion(lesion)]

    def add_image(self, image_id: str, probs: Any, labels: Any) -> list[ImageCounts]:
        """Pool one image (``bin_image``) and return its per-lesion counts."""
        return self.pool(image_id, self.bin_image(image_id, probs, labels))

    def bin_image(self, image_id: str, probs: Any, labels: Any) -> list[LesionHistogram]:
        """One image's histogram of each lesion, in ``lesions`` order (not pooled).

        ``probs`` is (C, H, W) with one channel per lesion in ``lesions`` order,
        ``labels`` the (H, W) uint8 label plane of ``lesionsoup.core.lesions``.
        NumPy probabilities, and torch tensors on the CPU, are binned by NumPy; a
        tensor on an accelerator is binned there (``lesionsoup.core.device_histograms``,
        the same counts), and only the counts cross to the host. (Torch on the CPU
        measured several times slower than NumPy: ``benchmarks/bench_evaluate.py``.)
        """
        if type(probs).__module__.startswith("torch") and probs.device.type == "cpu":
            labels = labels.numpy() if type(labels).__module__.startswith("torch") else labels
            probs = (probs.float() if probs.dtype.itemsize < 4 else probs).numpy()
        if not type(probs).__module__.startswith("torch"):
            return self._bin_on_cpu(image_id, np.asarray(probs), np.asarray(labels))
        from lesionsoup.core.device_histograms import bin_image

        self._check_shapes(image_id, tuple(probs.shape), tuple(labels.shape))
        negatives, positives = bin_image(image_id, probs, labels, self.lesions, self.bins)
        return [
            LesionHistogram(self.bins, pos, neg)
            for pos, neg in zip(positives, negatives, strict=True)
        ]

    def pool(self, image_id: str, images: Sequence[LesionHistogram]) -> list[ImageCounts]:
        """Add one image's histograms (``bin_image``) and return its per-lesion counts."""
        counts = []
        for lesion, image in zip(self.lesions, images, strict=True):
            self.histograms[lesion] = self.histograms[lesion] + image
            counts.append(ImageCounts.from_histogram(image_id, lesion, image))
        return counts

    def _check_shapes(self, image_id: str, probs: tuple[int, ...], labels: tuple[int, ...]) -> None:
        expected = (len(self.lesions), *labels)
        if len(labels) != 2 or probs != expected:
            raise ValueError(
                f"{image_id}: probabilities {probs} do not match {expected} "
                f"(lesions {[x.value for x in self.lesions]}, labels {labels})"
            )

    def _bin_on_cpu(
        self, image_id: str, probs: np.ndarray, labels: np.ndarray
    ) -> list[LesionHistogram]:
        self._check_shapes(image_id, probs.shape, labels.shape)
        valid = valid_mask(labels)
        images = []
        for channel, lesion in zip(probs, self.lesions, strict=True):
            image = LesionHistogram(self.bins)
            try:
                image.update(channel, (labels & lesion.bit) != 0, valid)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{image_id} {lesion.value}: {error}") from None
            images.append(image)
        return images

    def metrics(self, counts: Iterable[ImageCounts] = ()) -> dict[str, dict[str, float]]:
        """Lesion name -> metric name -> value: pooled metrics, plus per-image ones from counts."""
        counts = list(counts)
        return {
            lesion.value: {
                **pooled_metrics(histogram),
                **per_image_metrics(c for c in counts if c.lesion == lesion.value),
            }
            for lesion, histogram in self.histograms.items()
        }

    def __add__(self, other: SegmentationHistograms) -> SegmentationHistograms:
        if not isinstance(other, SegmentationHistograms):
            return NotImplemented
        if other.lesions != self.lesions:
            raise ValueError(f"cannot merge lesions {self.lesions} and {other.lesions}")
        merged = SegmentationHistograms(self.lesions, self.bins)
        for lesion in self.lesions:
            merged.histograms[lesion] = self.histograms[lesion] + other.histograms[lesion]
        return merged

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SegmentationHistograms):
            return NotImplemented
        return self.histograms == other.histograms

    __hash__ = None  # type: ignore[assignment]  # mutable

    def to_dict(self) -> dict[str, Any]:
        return {
            "bins": self.bins,
            "lesions": {lesion.value: h.to_dict() for lesion, h in self.histograms.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentationHistograms:
        try:
            bins, lesions = data["bins"], data["lesions"]
            result = cls(lesions, bins)
            for name, entry in lesions.items():
                histogram = LesionHistogram.from_dict(entry)
                if histogram.bins != result.bins:
                    raise ValueError(f"{name} has {histogram.bins} bins, expected {result.bins}")
                result.histograms[Lesion(name)] = histogram
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"malformed histograms: {error!r}") from None
        return result

    def save(self, path: Path) -> None:
        """Write as JSON through a temporary file, so no partial file is left behind."""
        atomic_write_bytes(Path(path), json.dumps(self.to_dict()).encode())

    @classmethod
    def load(cls, path: Path) -> SegmentationHistograms:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (ValueError, TypeError) as error:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"{path}: not a lesionsoup histogram file: {error}") from None
