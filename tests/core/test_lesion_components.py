"""Lesion-wise counts and metrics: hand-drawn masks, an independent count (scikit-image and
a loop over components) on random masks, merging, and the bootstrap of per-image counts."""

import math

import numpy as np
import pytest
from scipy import ndimage
from support.lesion_counting import naive_counts

from lesionsoup.core.lesion_components import (
    MA_SIZE_EDGES,
    OTHER_SIZE_EDGES,
    SIZE_BINS,
    component_counts,
    size_edges,
)
from lesionsoup.core.lesions import Lesion
from lesionsoup.core.metrics import (
    METRIC_LABELS,
    POOLED_METRICS,
    LesionHistogram,
    conventions,
    lesion_f1,
    lesion_precision,
    lesion_sensitivity,
)
from lesionsoup.evaluation.statistics import (
    ImageHistograms,
    bootstrap_interval,
    image_histograms_from_dict,
    image_histograms_to_dict,
    resample,
    resample_weights,
)

BINS = 10
LESION_METRICS = ["lesion_sensitivity", "lesion_precision", "lesion_f1"] + [
    f"lesion_f1_{size}" for size in SIZE_BINS
]


def drawn(shape: tuple[int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    """A boolean mask with the boxes (row0, col0, row1, col1), inclusive, set."""
    mask = np.zeros(shape, bool)
    for r0, c0, r1, c1 in boxes:
        mask[r0 : r1 + 1, c0 : c1 + 1] = True
    return mask


# 12 x 12: A (4 px) is hit, B (9 px) is missed, C and D (4 px each) are both touched by one
# predicted bar; a 2-pixel prediction touches nothing
REFERENCE = drawn((12, 12), (1, 1, 2, 2), (1, 8, 3, 10), (7, 1, 8, 2), (7, 5, 8, 6))
PREDICTED = drawn((12, 12), (2, 2, 3, 3), (10, 9, 10, 10), (8, 2, 8, 5))
VALID = np.ones((12, 12), bool)


def histogram_of(components) -> LesionHistogram:
    """One image of 2 valid pixels (a positive at 0.0, a negative at 1.0) and ``components``."""
    pixels = np.zeros(BINS + 1, np.int64)
    positives, negatives = pixels.copy(), pixels.copy()
    positives[0], negatives[-1] = 1, 1
    return LesionHistogram(BINS, positives, negatives, None, np.asarray(components, np.int64))


def test_hand_drawn_hit_miss_false_component_and_one_prediction_on_two_lesions():
    counts = component_counts(REFERENCE, PREDICTED, VALID, OTHER_SIZE_EDGES)
    # every component is small (< 100 px): reference 4, detected 3 (A, C, D), predicted 3,
    # matched 2 (the bar counts once although it detects two lesions)
    assert counts.tolist() == [[4, 3, 3, 2], [0, 0, 0, 0], [0, 0, 0, 0]]
    histogram = histogram_of(counts)
    assert lesion_sensitivity(histogram) == pytest.approx(3 / 4)
    assert lesion_precision(histogram) == pytest.approx(2 / 3)
    assert lesion_f1(histogram) == pytest.approx(12 / 17)  # 2 * 2/3 * 3/4 / (2/3 + 3/4)
    assert POOLED_METRICS["lesion_f1_small"](histogram) == pytest.approx(12 / 17)
    assert math.isnan(POOLED_METRICS["lesion_f1_large"](histogram))  # no component that large


def test_hand_drawn_components_fall_in_the_bins_of_their_own_area():
    # edges 3 and 9: A, C, D (4 px) and the predictions of 4 px are medium, B (9 px) large,
    # the 2-pixel false prediction small
    counts = component_counts(REFERENCE, PREDICTED, VALID, (3, 9))
    assert counts.tolist() == [[0, 0, 1, 0], [3, 3, 2, 2], [1, 0, 0, 0]]
    histogram = histogram_of(counts)
    assert POOLED_METRICS["lesion_f1_small"](histogram) == 0.0  # a false positive, no lesion
    assert POOLED_METRICS["lesion_f1_medium"](histogram) == pytest.approx(1.0)
    assert POOLED_METRICS["lesion_f1_large"](histogram) == 0.0  # a lesion, nothing predicted


def test_diagonal_neighbours_connect_and_invalid_pixels_cut():
    diagonal = np.eye(4, dtype=bool)
    counts = component_counts(diagonal, diagonal, np.ones((4, 4), bool), (10, 50))
    assert counts[0].tolist() == [1, 1, 1, 1]
    valid = np.ones((4, 4), bool)
    valid[1, 1] = False  # cuts the diagonal into (0,0) and (2,2)-(3,3)
    nothing = np.zeros((4, 4), bool)
    guess = drawn((4, 4), (1, 1, 1, 1), (0, 3, 0, 3))  # (1,1) is invalid: not a prediction
    counts = component_counts(diagonal, guess, valid, (10, 50))
    assert counts[0].tolist() == [2, 0, 1, 0]
    assert component_counts(nothing, nothing, valid, (10, 50)).sum() == 0


def test_size_bins_are_one_list_with_ma_apart():
    assert size_edges(Lesion.MA) == MA_SIZE_EDGES and size_edges("HE") == OTHER_SIZE_EDGES
    assert all(size_edges(lesion) == OTHER_SIZE_EDGES for lesion in ("EX", "CWS"))
    words = conventions()["lesion_size_bins"]
    assert f">= {MA_SIZE_EDGES[1]} px" in words and f"< {OTHER_SIZE_EDGES[0]} px" in words
    assert set(LESION_METRICS) <= set(POOLED_METRICS) and set(LESION_METRICS) <= set(METRIC_LABELS)
    with pytest.raises(ValueError, match="increasing"):
        component_counts(REFERENCE, PREDICTED, VALID, (50, 10))
    with pytest.raises(ValueError, match="boolean"):
        component_counts(REFERENCE.astype(np.uint8), PREDICTED, VALID, (10, 50))


def random_mask(rng: np.random.Generator, shape: tuple[int, int], density: float) -> np.ndarray:
    """Blobs of many sizes: seeds grown by a random number of dilations, then thinned."""
    mask = rng.random(shape) < density
    for _ in range(int(rng.integers(0, 4))):
        mask = ndimage.binary_dilation(mask) & (rng.random(shape) < 0.9)
    return mask


@pytest.mark.parametrize("seed", range(6))
def test_random_masks_against_an_independent_count(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(20, 120)), int(rng.integers(20, 120)))
    reference = random_mask(rng, shape, 0.02)
    predicted = random_mask(rng, shape, 0.02) | (reference & (rng.random(shape) < 0.3))
    valid = rng.random(shape) < 0.97
    for edges in (MA_SIZE_EDGES, OTHER_SIZE_EDGES, (2, 5)):
        ours = component_counts(reference, predicted, valid, edges)
        assert np.array_equal(ours, naive_counts(reference, predicted, valid, edges)), edges
    assert ours[:, 0].sum() > 3 and ours[:, 2].sum() > 3 and ours[:, 1].sum() > 0


def test_merged_images_score_the_counts_added_by_hand():
    rng = np.random.default_rng(7)
    first = component_counts(REFERENCE, PREDICTED, VALID, (3, 9))
    masks = random_mask(rng, (60, 60), 0.02), random_mask(rng, (60, 60), 0.02)
    second = component_counts(*masks, np.ones((60, 60), bool), (3, 9))
    merged = histogram_of(first) + histogram_of(second)
    by_hand = [
        [a + b for a, b in zip(row, other, strict=True)]
        for row, other in zip(first.tolist(), second.tolist(), strict=True)
    ]
    assert merged.components.tolist() == by_hand
    totals = np.array(by_hand).sum(axis=0)
    recall, precision = totals[1] / totals[0], totals[3] / totals[2]
    assert lesion_sensitivity(merged) == pytest.approx(recall)
    assert lesion_precision(merged) == pytest.approx(precision)
    assert lesion_f1(merged) == pytest.approx(2 * precision * recall / (precision + recall))
    round_trip = LesionHistogram.from_dict(merged.to_dict())
    assert round_trip == merged and round_trip.components.tolist() == by_hand


def test_histograms_without_counts_have_no_lesion_metrics_and_do_not_merge_with_counted():
    plain = histogram_of(np.zeros((3, 4), np.int64))
    plain.components = None
    for name in LESION_METRICS:
        assert math.isnan(POOLED_METRICS[name](plain)), name
    assert math.isnan(lesion_f1(histogram_of(np.zeros((3, 4), np.int64))))
    with pytest.raises(ValueError, match="lesion-wise"):
        _ = plain + histogram_of(np.ones((3, 4), np.int64))
    assert (LesionHistogram(BINS) + histogram_of(np.ones((3, 4), np.int64))).components.sum() == 12
    assert plain != histogram_of(np.zeros((3, 4), np.int64))
    with pytest.raises(ValueError, match="detected"):
        histogram_of([[1, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError, match="components must be"):
        histogram_of(np.zeros((2, 4), np.int64))


def simulated_counts(rng: np.random.Generator, images: int) -> np.ndarray:
    """(images, size bins, 4) counts: Poisson lesions, detected and matched at random."""
    reference = rng.poisson([3.0, 1.5, 0.5], (images, 3))
    predicted = rng.poisson([2.5, 1.5, 0.7], (images, 3))
    detected = rng.binomial(reference, [0.5, 0.7, 0.9])
    matched = rng.binomial(predicted, [0.4, 0.7, 0.9])
    return np.stack([reference, detected, predicted, matched], axis=-1).astype(np.int64)


def f1_by_numpy(totals: np.ndarray) -> np.ndarray:
    """Lesion-wise F1 of rows of (reference, detected, predicted, matched), vectorised."""
    reference, detected, predicted, matched = totals.T.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(reference > 0, detected / reference, 0.0)
        precision = np.where(predicted > 0, matched / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return np.where((reference == 0) & (predicted == 0), np.nan, f1)


def stacked(counts: np.ndarray) -> ImageHistograms:
    images = len(counts)
    ones = np.ones((images, BINS + 1), np.int64)
    return ImageHistograms(BINS, ones, ones, components=counts)


def test_bootstrap_of_lesion_f1_is_a_resampling_of_the_per_image_counts():
    rng = np.random.default_rng(11)
    counts = simulated_counts(rng, 30)
    images = [histogram_of(c) for c in counts]
    stacked_images = ImageHistograms.stack(images)
    assert np.array_equal(stacked_images.components, counts)
    weights = resample_weights(30, 300, seed=5)
    resampled = resample(stacked_images, POOLED_METRICS, weights)
    drawn_totals = np.einsum("ri,ibc->rbc", weights, counts)  # each resample's summed counts
    assert np.allclose(resampled["lesion_f1"].scores, f1_by_numpy(drawn_totals.sum(axis=1)))
    for size, name in enumerate(f"lesion_f1_{s}" for s in SIZE_BINS):
        expected = f1_by_numpy(drawn_totals[:, size])
        assert np.allclose(resampled[name].scores, expected, equal_nan=True), name
    whole = counts.sum(axis=(0, 1))
    sensitivity = np.einsum("ri,ibc->rc", weights, counts)
    assert np.allclose(
        resampled["lesion_sensitivity"].scores, sensitivity[:, 1] / sensitivity[:, 0]
    )
    interval = bootstrap_interval(stacked_images, lesion_f1, resamples=300, seed=5)
    assert interval.estimate == pytest.approx(f1_by_numpy(whole[None])[0])
    low, high = np.percentile(f1_by_numpy(drawn_totals.sum(axis=1)), [2.5, 97.5])
    assert (interval.low, interval.high) == pytest.approx((low, high))
    # the per-image JSON keeps the counts
    entry = image_histograms_to_dict(
        [f"i{k}" for k in range(30)], ["EX"], [[h] for h in images], BINS
    )
    assert np.array_equal(image_histograms_from_dict(entry)["EX"].components, counts)


def test_lesion_f1_intervals_cover_the_population_value_at_the_nominal_rate():
    rng = np.random.default_rng(3)
    population = simulated_counts(rng, 4000)
    truth = f1_by_numpy(population.sum(axis=(0, 1))[None])[0]
    repeats, covered = 200, 0
    for repeat in range(repeats):
        chosen = rng.choice(len(population), 40, replace=False)
        interval = bootstrap_interval(stacked(population[chosen]), lesion_f1, 400, seed=repeat)
        covered += interval.low <= truth <= interval.high
    # as the pixel metrics' test in tests/evaluation/test_statistics.py: 95% nominal, 1.5 points of
    # Monte-Carlo error
    assert 0.88 <= covered / repeats <= 0.99
