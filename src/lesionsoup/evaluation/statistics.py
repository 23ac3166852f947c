"""How sure a metric is, over the test images: bootstrap intervals, paired comparisons, Holm.

A pooled metric (average precision, AUPR, ...) is a function of the test set's
summed histograms, so resampling test images with replacement is resampling
their per-image histograms: each bootstrap replicate is a weighted sum (the
weights are how often each image was drawn), scored with the same metric
function as the point estimate. No inference is repeated.

- ``resample``: every metric of one lesion on the whole test set and on each
  resample (``Resampled``); ``mean_resampled`` averages lesions resample by resample.
- ``Resampled.interval``, ``bootstrap_interval``: the percentile interval of one
  model's metric.
- ``compare``, ``paired_comparison``: two models on the same test images, resampled
  with the same draws; the difference, its percentile interval and a two-sided
  p-value from the bootstrap distribution shifted to the null (Efron & Tibshirani
  1993, section 16.4: ``(1 + #{|d* - d| >= |d|}) / (1 + R)``).
- ``holm``: Holm's step-down adjustment of a family of p-values.

Per-image histograms keep at most ``PER_IMAGE_GROUPS`` groups of consecutive bins
(``image_groups``), the same groups for every image of one evaluation. Every bin
holding a positive pixel of the whole test set is a group of its own, and so is
every threshold edge (0.0, 0.1, ..., 1.0); the negatives between two such bins
share one group. Re-expanded to the full bins (``expand_groups``: a group's counts
at its first bin), a sum of images then ranks every negative against every
positive as the full bins do, so average precision, AUROC, the 11-point AUPR and
Dice are those of the full bins, exactly, for the whole set and for any
resample of its images. Only a test set with more positive bins than the budget
falls back to groups holding equal shares of its positives, counted from the top
(``image_groups``): on the demo's evaluations average precision then stays within
0.0025 of the full bins'.

The expected calibration error also needs where in a group its pixels lie (their mean
probability). Where the test set's pooled histogram is known (``bin_offsets``), each
group's positives, and its negatives, sit on the two neighbouring bins around their
pooled mean bin, in the shares that keep the sum of their bin indices
(``spread_groups``); otherwise at the group's first bin. No group crosses a threshold
edge, and in the exact case above a group holding positives is one bin, so this moves
no metric above there (in the fallback it moves average precision by about 0.001 on
tests/evaluation/test_statistics.py's sets); the ECE of the whole set is that of the full bins.
A resample assumes its images' pixels lie within each group as the whole set's do
(tests/evaluation/test_statistics.py measures the ECE's error).

Lesion-wise counts (``LesionHistogram.components``: reference, detected, predicted and
matched connected components per size bin) are kept per image in full and summed with the
same weights, so the lesion-wise metrics of any resample are exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lesionsoup.core.batched_metrics import BATCHED_METRICS, HistogramStack
from lesionsoup.core.lesion_components import COMPONENT_COUNTS, SIZE_BINS
from lesionsoup.core.metrics import POOLED_METRICS, LesionHistogram

Metric = Callable[[LesionHistogram], float]
#: Groups of bins the per-image histograms keep at most: four lesions of one image
#: take a few kilobytes (tests/evaluation/test_evaluate.py).
PER_IMAGE_GROUPS = 200


def image_groups(pooled: LesionHistogram, budget: int = PER_IMAGE_GROUPS) -> np.ndarray:
    """The first bin of each group of the per-image histograms of one lesion (module
    docstring), from the test set's pooled histogram; ``bins + 1`` entries in all."""
    bins = pooled.bins
    edges = {0, bins, *(round(k * bins / 10) for k in range(11))}
    positive = np.flatnonzero(pooled.positives)
    exact = edges | set(positive.tolist()) | {b + 1 for b in positive.tolist() if b < bins}
    if len(exact) <= budget:
        return np.array(sorted(exact), np.int64)
    # equal shares of the positives, counted from the top (from_top[j]: bins >= bins - j)
    from_top = np.cumsum(pooled.positives[::-1])
    groups = budget - len(edges)
    shares = from_top[-1] * np.arange(1, groups) / groups
    cuts = bins - np.searchsorted(from_top, shares, side="left")
    return np.array(sorted(edges | {int(cut) for cut in cuts if 0 < cut <= bins}), np.int64)


def group_counts(counts: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Counts over the last axis (``bins + 1``) summed within each group."""
    return np.add.reduceat(counts, starts, axis=-1)


def expand_groups(grouped: np.ndarray, starts: np.ndarray, bins: int) -> np.ndarray:
    """Group counts (..., groups) back on the full ``bins + 1``: each at its group's first bin."""
    full = np.zeros((*grouped.shape[:-1], bins + 1), np.int64)
    full[..., starts] = grouped
    return full


def bin_offsets(counts: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per group, the sum over its pixels of their bin's offset from the group's first
    bin, from the test set's pooled counts (``bins + 1``)."""
    widths = np.diff(np.append(starts, counts.size))
    offsets = np.arange(counts.size) - np.repeat(starts, widths)
    return np.add.reduceat(counts * offsets, starts)


def spread_groups(
    grouped: np.ndarray, starts: np.ndarray, bins: int, offsets: np.ndarray, pooled: np.ndarray
) -> np.ndarray:
    """Group counts (rows, groups) on the full ``bins + 1``: each group's at the two bins
    around its pooled mean offset (``bin_offsets`` over the ``pooled`` group counts), in
    the shares that keep the mean."""
    full = expand_groups(grouped, starts, bins)
    moving = np.flatnonzero((offsets > 0) & (pooled > 0))
    if moving.size == 0:
        return full
    low, rest = np.divmod(offsets[moving], pooled[moving])
    counts = grouped[:, moving]
    upper = np.clip(np.rint(counts * (rest / pooled[moving])), 0, counts).astype(np.int64)
    full[:, starts[moving]] -= counts
    rows = np.arange(full.shape[0])[:, None]
    np.add.at(full, (rows, starts[moving] + low), counts - upper)
    np.add.at(full, (rows, starts[moving] + low + 1), upper)
    return full


@dataclass(frozen=True)
class ImageHistograms:
    """Per-image counts of one lesion in ``bins``-bin histograms: ``positives`` and
    ``negatives`` are (images, groups), the groups starting at ``starts`` (default: every
    bin its own group); ``decisions`` (images, 4) the tp, fp, fn, tn of each image's argmax
    prediction where the evaluation has one (``LesionHistogram.decisions``); ``offsets``
    (2, groups) the ``bin_offsets`` of the whole set's positives and negatives, where
    known (``spread_groups``; None: each group's counts at its first bin); ``components``
    (images, size bins, 4) each image's lesion-wise counts where the evaluation has them
    (``LesionHistogram.components``), summed with the same weights as the pixels."""

    bins: int
    positives: np.ndarray
    negatives: np.ndarray
    starts: np.ndarray | None = None
    decisions: np.ndarray | None = None
    offsets: np.ndarray | None = None
    components: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.starts is None:
            object.__setattr__(self, "starts", np.arange(self.bins + 1))
        starts = np.asarray(self.starts, np.int64)
        object.__setattr__(self, "starts", starts)
        valid = starts.ndim == 1 and starts.size and starts[0] == 0 and starts[-1] <= self.bins
        if not valid or (np.diff(starts) <= 0).any():
            raise ValueError(
                f"group starts {starts.tolist()} do not partition {self.bins + 1} bins"
            )
        shape = self.positives.shape
        if len(shape) != 2 or shape[1] != starts.size or self.negatives.shape != shape:
            raise ValueError(
                f"per-image counts {shape} and {self.negatives.shape} are not "
                f"(images, {starts.size} groups)"
            )
        if self.decisions is not None and np.shape(self.decisions) != (shape[0], 4):
            raise ValueError(f"decisions {np.shape(self.decisions)} are not ({shape[0]}, 4)")
        if self.offsets is not None and np.shape(self.offsets) != (2, starts.size):
            raise ValueError(f"offsets {np.shape(self.offsets)} are not (2, {starts.size})")
        cells = (shape[0], len(SIZE_BINS), len(COMPONENT_COUNTS))
        if self.components is not None and np.shape(self.components) != cells:
            raise ValueError(f"components {np.shape(self.components)} are not {cells}")

    @classmethod
    def stack(
        cls, histograms: Sequence[LesionHistogram], starts: np.ndarray | None = None
    ) -> ImageHistograms:
        """Images' histograms, summed within the groups at ``starts`` (default: none)."""
        if not histograms or len({h.bins for h in histograms}) != 1:
            raise ValueError("stack needs at least one histogram, all with the same bins")
        bins = histograms[0].bins
        starts = np.arange(bins + 1) if starts is None else np.asarray(starts, np.int64)
        decided = [h.decisions for h in histograms]
        counted = [h.components for h in histograms]
        pooled = LesionHistogram(
            bins,
            np.sum([h.positives for h in histograms], axis=0),
            np.sum([h.negatives for h in histograms], axis=0),
        )
        return cls(
            bins,
            group_counts(np.stack([h.positives for h in histograms]), starts),
            group_counts(np.stack([h.negatives for h in histograms]), starts),
            starts,
            None if None in decided else np.array(decided, np.int64),
            pooled_offsets(pooled, starts),
            None if any(c is None for c in counted) else np.stack(counted).astype(np.int64),
        )

    @property
    def images(self) -> int:
        return self.positives.shape[0]

    def pooled(self, weights: np.ndarray | None = None) -> LesionHistogram:
        """The histogram of the images counted ``weights`` times each (once by default)."""
        weights = np.ones(self.images, np.int64) if weights is None else weights
        return self.replicates(weights[None])[0]

    def replicates(self, weights: np.ndarray) -> list[LesionHistogram]:
        """One pooled histogram per row of ``weights`` (resamples, images)."""
        stack = self.replicate_stack(weights)
        rows = len(weights)
        decisions = stack.decisions if stack.decisions is not None else [None] * rows
        components = stack.components if stack.components is not None else [None] * rows
        return [
            LesionHistogram(self.bins, p, n, d, c)
            for p, n, d, c in zip(
                stack.positives, stack.negatives, decisions, components, strict=True
            )
        ]

    def replicate_stack(self, weights: np.ndarray) -> HistogramStack:
        """``replicates`` as one ``HistogramStack``, a row per row of ``weights``."""
        counts = (self.positives, self.negatives)
        if self.decisions is not None:
            counts += (self.decisions,)
        if self.components is not None:
            counts += (self.components.reshape(self.images, -1),)
        sums = _weighted_sums(weights, *counts)
        positives, negatives = (expand_groups(c, self.starts, self.bins) for c in sums[:2])
        if self.offsets is not None:
            positives, negatives = (
                spread_groups(c, self.starts, self.bins, offsets, pooled.sum(axis=0))
                for c, offsets, pooled in zip(
                    sums[:2], self.offsets, (self.positives, self.negatives), strict=True
                )
            )
        components = None
        if self.components is not None:
            components = sums[-1].reshape(len(weights), *self.components.shape[1:])
        decisions = sums[2] if self.decisions is not None else None
        return HistogramStack(self.bins, positives, negatives, decisions, components)


#: Below this, integer sums of products are exact in float64.
_EXACT_IN_FLOAT64 = 2**53


def _weighted_sums(weights: np.ndarray, *counts: np.ndarray) -> list[np.ndarray]:
    """``weights @ c`` for each count array, as int64. NumPy multiplies integer matrices
    without BLAS; in float64 the same products are exact while the largest possible sum
    stays below 2**53, and about 14 times faster (benchmarks/bench_uncertainty.py)."""
    top = int(np.max(weights, initial=0)) * max(int(c.sum(axis=0).max(initial=0)) for c in counts)
    if top >= _EXACT_IN_FLOAT64:
        return [weights @ c for c in counts]
    real = weights.astype(np.float64)
    return [np.rint(real @ c.astype(np.float64)).astype(np.int64) for c in counts]


def image_histograms_to_dict(
    image_ids: Sequence[str],
    lesions: Sequence[str],
    images: Sequence[Sequence[LesionHistogram]],
    bins: int,
) -> dict[str, Any]:
    """The per-image ``bins``-bin histograms of an evaluation (``images[i][k]``: image i,
    lesion k), as JSON: each lesion's groups (``image_groups`` of the images' sum) and one
    row of group counts per image."""
    entry: dict[str, Any] = {"bins": bins, "image_ids": list(image_ids), "lesions": {}}
    for k, lesion in enumerate(lesions):
        column = [row[k] for row in images]
        if any(histogram.bins != bins for histogram in column):
            raise ValueError(f"per-image histograms of {lesion} are not all of {bins} bins")
        starts = image_groups(sum(column, LesionHistogram(bins)))
        counts = [
            group_counts(np.stack(part), starts).tolist() if column else []
            for part in ([h.positives for h in column], [h.negatives for h in column])
        ]
        entry["lesions"][lesion] = {
            "groups": starts.tolist(),
            "positives": counts[0],
            "negatives": counts[1],
        }
        if column and all(histogram.decisions is not None for histogram in column):
            entry["lesions"][lesion]["decisions"] = [list(h.decisions) for h in column]
        if column and all(histogram.components is not None for histogram in column):
            entry["lesions"][lesion]["components"] = [h.components.tolist() for h in column]
    return entry


def pooled_offsets(pooled: LesionHistogram, starts: np.ndarray) -> np.ndarray:
    """(2, groups): the ``bin_offsets`` of the positives and the negatives of ``pooled``,
    the test set's histogram, in the groups at ``starts``."""
    return np.stack([bin_offsets(pooled.positives, starts), bin_offsets(pooled.negatives, starts)])


def image_histograms_from_dict(
    entry: Mapping[str, Any], pooled: Mapping[str, Any] | None = None
) -> dict[str, ImageHistograms]:
    """Lesion -> ``ImageHistograms`` of an evaluation's ``image_histograms`` entry;
    ``pooled``, the evaluation's ``histograms`` of the whole test set, places negatives
    within their groups (``spread_groups``)."""
    images = len(entry["image_ids"])
    result = {}
    for lesion, counts in entry["lesions"].items():
        starts = np.array(counts["groups"], np.int64)
        positives = np.array(counts["positives"], np.int64).reshape(images, -1)
        negatives = np.array(counts["negatives"], np.int64).reshape(images, -1)
        offsets = None
        if pooled is not None:
            whole = LesionHistogram.from_dict(pooled["lesions"][lesion])
            if not np.array_equal(group_counts(whole.negatives, starts), negatives.sum(axis=0)):
                raise ValueError(f"{lesion}: the pooled histogram is not the images' sum")
            if not np.array_equal(group_counts(whole.positives, starts), positives.sum(axis=0)):
                raise ValueError(f"{lesion}: the pooled histogram is not the images' sum")
            offsets = pooled_offsets(whole, starts)
        result[lesion] = ImageHistograms(
            int(entry["bins"]),
            positives,
            negatives,
            starts,
            np.array(counts["decisions"], np.int64) if "decisions" in counts else None,
            offsets,
            _components(counts.get("components"), images),
        )
    return result


def _components(rows: Any, images: int) -> np.ndarray | None:
    """The per-image lesion-wise counts of an ``image_histograms`` entry, checked."""
    if rows is None:
        return None
    cells = (images, len(SIZE_BINS), len(COMPONENT_COUNTS))
    counts = np.array(rows)
    if counts.shape != cells or not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
        raise ValueError(f"per-image components {counts.shape} are not {cells} counts")
    return counts.astype(np.int64)


def resample_weights(images: int, resamples: int, seed: int | Sequence[int]) -> np.ndarray:
    """(resamples, images) draw counts: each row draws ``images`` images with replacement
    (``seed``: NumPy's seed, an int or a sequence of ints)."""
    if images < 1 or resamples < 1:
        raise ValueError(f"need at least one image and one resample, not {images}, {resamples}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(images, np.full(images, 1 / images), size=resamples).astype(np.int64)


@dataclass(frozen=True)
class Interval:
    """A metric's value on the whole test set and its bootstrap percentile interval.

    ``resamples`` counts the replicates the interval uses: a replicate without any
    positive pixel has no average precision and is left out.
    """

    estimate: float
    low: float
    high: float
    resamples: int


#: One lesion's per-image histograms, or several lesions' (of the same images), whose
#: metric is then the mean over the lesions that have one.
Images = ImageHistograms | Sequence[ImageHistograms]


def _lesions(images: Images) -> list[ImageHistograms]:
    group = [images] if isinstance(images, ImageHistograms) else list(images)
    if not group or len({lesion.images for lesion in group}) != 1:
        raise ValueError("the lesions of one bootstrap need the same, non-empty, set of images")
    return group


def finite_mean(values: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of the finite values, NaN where none is (no warning): the mean
    over lesions, or over models, of each resample."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=0)
    totals = np.where(finite, values, 0.0).sum(axis=0)
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


@dataclass(frozen=True, eq=False)
class Resampled:
    """A metric on the whole test set (``estimate``) and on each resample of its images."""

    estimate: float
    scores: np.ndarray

    def interval(self, confidence: float) -> Interval:
        low, high = percentile_interval(self.scores, confidence)
        return Interval(self.estimate, low, high, int(np.isfinite(self.scores).sum()))


#: Each pooled metric's batched form (``core.batched_metrics``), by the metric function.
_BATCHED = {POOLED_METRICS[name]: BATCHED_METRICS[name] for name in POOLED_METRICS}


def resample(
    lesion: ImageHistograms, metrics: Mapping[str, Metric], weights: np.ndarray
) -> dict[str, Resampled]:
    """Each of ``metrics`` of one lesion's pooled images and of each resample (rows of
    ``weights``): the replicate histograms are summed once for all metrics."""
    whole, stack = lesion.pooled(), lesion.replicate_stack(weights)
    histograms: list[LesionHistogram] | None = None  # only for a metric with no batched form
    scores = {}
    for name, metric in metrics.items():
        if metric in _BATCHED:
            scores[name] = _BATCHED[metric](stack).astype(np.float64)
            continue
        histograms = histograms or lesion.replicates(weights)
        scores[name] = np.array([metric(h) for h in histograms], np.float64)
    return {name: Resampled(metric(whole), scores[name]) for name, metric in metrics.items()}


def mean_resampled(resampled: Sequence[Resampled]) -> Resampled:
    """The mean over lesions (those with a value), of the estimates and of each resample."""
    estimates = np.array([[item.estimate] for item in resampled], np.float64)
    scores = np.stack([item.scores for item in resampled])
    return Resampled(float(finite_mean(estimates)[0]), finite_mean(scores))


def _resampled(images: Images, metric: Metric, weights: np.ndarray) -> Resampled:
    """``metric`` of the images and of each resample, averaged over the lesions."""
    return mean_resampled(
        [resample(lesion, {"": metric}, weights)[""] for lesion in _lesions(images)]
    )


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of the finite resample values."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), not {confidence}")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_interval(
    images: Images,
    metric: Metric,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int | Sequence[int] = 0,
) -> Interval:
    """``metric`` of the pooled images and its percentile interval over image resamples
    (``seed``: as ``resample_weights``'s, e.g. ``uncertainty.draws_seed``)."""
    count = _lesions(images)[0].images
    return _resampled(images, metric, resample_weights(count, resamples, seed)).interval(confidence)


@dataclass(frozen=True)
class Comparison:
    """``b - a`` on the same test images: the difference, its interval and p-value."""

    difference: float
    low: float
    high: float
    p_value: float
    resamples: int


def paired_comparison(
    a: Images,
    b: Images,
    metric: Metric,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Paired bootstrap of ``metric(b) - metric(a)``; both hold the same images in one order."""
    count, other = _lesions(a)[0].images, _lesions(b)[0].images
    if count != other:
        raise ValueError(f"paired models need the same test images, not {count} and {other}")
    weights = resample_weights(count, resamples, seed)
    return compare(_resampled(a, metric, weights), _resampled(b, metric, weights), confidence)


def compare(a: Resampled, b: Resampled, confidence: float = 0.95) -> Comparison:
    """``b - a`` from two metrics resampled with the same draws of the same images."""
    if a.scores.shape != b.scores.shape:
        raise ValueError(f"paired resamples need one shape, not {a.scores.shape}, {b.scores.shape}")
    differences = b.scores - a.scores
    observed = b.estimate - a.estimate
    low, high = percentile_interval(differences, confidence)
    p_value = shifted_null_p_value(differences, observed)
    resamples = int(np.isfinite(differences).sum()) if math.isfinite(p_value) else 0
    return Comparison(observed, low, high, p_value, resamples)


def shifted_null_p_value(differences: np.ndarray, observed: float) -> float:
    """Two-sided p-value of an observed difference from its bootstrap replicates, their
    distribution shifted to the null: ``(1 + #{|d* - d| >= |d|}) / (1 + R)`` over the finite
    replicates; NaN without any, or without an observed difference."""
    finite = differences[np.isfinite(differences)]
    if finite.size == 0 or not math.isfinite(observed):
        return math.nan
    extreme = int(np.sum(np.abs(finite - observed) >= abs(observed)))
    return (1 + extreme) / (1 + finite.size)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values, in the given order: the k-th smallest of m is multiplied
    by ``m - k + 1``, made non-decreasing along that order and capped at 1. NaN stays
    NaN and does not count towards m."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(indexed):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[index] = running
    return adjusted
