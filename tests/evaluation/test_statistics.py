"""Bootstrap intervals, paired comparisons and Holm's correction against simulated cases
whose answer is known and a hand-worked example."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats
from support.statistics import BINS, simulated_image, simulated_pair

from lesionsoup.core.metrics import (
    POOLED_METRICS,
    LesionHistogram,
    auroc,
    average_precision,
    expected_calibration_error,
)
from lesionsoup.evaluation.statistics import (
    PER_IMAGE_GROUPS,
    ImageHistograms,
    bootstrap_interval,
    compare,
    holm,
    image_groups,
    mean_resampled,
    paired_comparison,
    resample,
    resample_weights,
)


def simulated_set(rng, images: int, separation: float = 2.0) -> ImageHistograms:
    return ImageHistograms.stack([simulated_image(rng, separation) for _ in range(images)])


def test_holm_against_a_hand_worked_family():
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.5, math.nan, 0.6])
    assert adjusted[0] == pytest.approx(1.0) and math.isnan(adjusted[1]) and adjusted[2] == 1.0
    assert holm([]) == []


def _metrics(histogram: LesionHistogram) -> dict[str, float]:
    return {name: metric(histogram) for name, metric in POOLED_METRICS.items()}


@pytest.mark.parametrize("separation", [0.5, 3.0])
def test_groups_keep_every_metric_exact_for_the_set_and_any_resample(separation):
    # few positives (a small demo test set): every positive bin is a group of its own
    rng = np.random.default_rng(0)
    full = [simulated_image(rng, separation, bins=2000, positives=3) for _ in range(8)]
    pooled = sum(full[1:], full[0])
    starts = image_groups(pooled)
    assert len(starts) <= PER_IMAGE_GROUPS < pooled.bins
    grouped = ImageHistograms.stack(full, starts)
    assert grouped.pooled().positive_pixels == pooled.positive_pixels
    assert _metrics(grouped.pooled()) == pytest.approx(_metrics(pooled), abs=1e-12)
    weights = resample_weights(8, 5, seed=1)
    for row, replicate in zip(weights, grouped.replicates(weights), strict=True):
        drawn = [h for h, times in zip(full, row, strict=True) for _ in range(times)]
        exact, scores = _metrics(sum(drawn[1:], drawn[0])), _metrics(replicate)
        # a resample's ECE assumes its pixels lie within each group as the whole set's do
        assert scores.pop("ece") == pytest.approx(exact.pop("ece"), abs=0.002)
        assert scores == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize("positives", [3, None])
def test_groups_without_the_pooled_offsets_keep_the_ranking_but_not_the_ece(positives):
    rng = np.random.default_rng(0)
    full = [simulated_image(rng, 3.0, bins=2000, positives=positives) for _ in range(8)]
    pooled = sum(full[1:], full[0])
    grouped = ImageHistograms.stack(full, image_groups(pooled))
    first_bins = dataclasses.replace(grouped, offsets=None).pooled()  # counts at first bins
    assert expected_calibration_error(grouped.pooled()) == pytest.approx(
        expected_calibration_error(pooled), abs=1e-12
    )
    assert abs(expected_calibration_error(first_bins) - expected_calibration_error(pooled)) > 0.01
    if positives:  # every group holding positives is one bin: spreading moves no ranking
        assert auroc(first_bins) == pytest.approx(auroc(grouped.pooled()), abs=1e-12)


@pytest.mark.parametrize("separation", [0.5, 1.5, 3.0, 6.0])
def test_groups_of_a_large_test_set_keep_average_precision(separation):
    # positives in nearly every bin: equal-count groups of the positives
    rng = np.random.default_rng(0)
    full = [simulated_image(rng, separation, bins=2000) for _ in range(30)]
    pooled = sum(full[1:], full[0])
    starts = image_groups(pooled)
    assert len(starts) <= PER_IMAGE_GROUPS
    grouped = ImageHistograms.stack(full, starts).pooled()
    assert grouped.positive_pixels == pooled.positive_pixels
    assert abs(average_precision(grouped) - average_precision(pooled)) < 0.005
    for threshold_metric in ("aupr_11pt", "dice_pooled", "ece"):
        metric = POOLED_METRICS[threshold_metric]
        assert metric(grouped) == pytest.approx(metric(pooled), abs=1e-12)


def test_resample_weights_draw_every_image_set_size_times():
    weights = resample_weights(7, 50, seed=3)
    assert weights.shape == (50, 7) and (weights.sum(axis=1) == 7).all()
    assert np.array_equal(weights, resample_weights(7, 50, seed=3))
    assert not np.array_equal(resample_weights(7, 50, [3, 1]), resample_weights(7, 50, [3, 2]))


def test_one_resampling_scores_every_metric_as_the_drawn_images_pooled_one_by_one():
    rng = np.random.default_rng(4)
    images = simulated_set(rng, 6)
    weights = resample_weights(6, 5, seed=0)
    resampled = resample(images, POOLED_METRICS, weights)
    for row, counts in enumerate(weights):
        drawn = np.repeat(np.arange(6), counts)  # each drawn image, as often as drawn
        pooled = LesionHistogram(
            BINS,
            images.positives[drawn].sum(axis=0),
            images.negatives[drawn].sum(axis=0),
            components=images.components[drawn].sum(axis=0),
        )
        for name, metric in POOLED_METRICS.items():
            assert resampled[name].scores[row] == pytest.approx(metric(pooled))
    assert resampled["ap"].estimate == pytest.approx(average_precision(images.pooled()))


def test_resampled_lesions_average_and_compare_as_the_bootstrap_functions_do():
    rng = np.random.default_rng(5)
    a_ex, b_ex = simulated_pair(rng, 20, (1.0, 3.0))
    a_he, b_he = simulated_pair(rng, 20, (1.0, 3.0))
    weights = resample_weights(20, 100, seed=9)
    metric = {"ap": average_precision}
    a = mean_resampled(
        [resample(a_ex, metric, weights)["ap"], resample(a_he, metric, weights)["ap"]]
    )
    b = mean_resampled(
        [resample(b_ex, metric, weights)["ap"], resample(b_he, metric, weights)["ap"]]
    )
    halves = (average_precision(a_ex.pooled()) + average_precision(a_he.pooled())) / 2
    assert a.estimate == pytest.approx(halves)
    alone = bootstrap_interval([a_ex, a_he], average_precision, resamples=100, seed=9)
    assert a.interval(0.95) == alone
    assert compare(a, b) == paired_comparison(
        [a_ex, a_he], [b_ex, b_he], average_precision, resamples=100, seed=9
    )
    with pytest.raises(ValueError, match="one shape"):
        compare(a, dataclasses.replace(b, scores=b.scores[:50]))


def test_intervals_cover_the_population_value_at_the_nominal_rate():
    rng = np.random.default_rng(1)
    population = simulated_set(rng, 4000)
    truth = average_precision(population.pooled())
    repeats, covered = 200, 0
    for repeat in range(repeats):
        chosen = rng.choice(population.images, 40, replace=False)
        sample = ImageHistograms(BINS, population.positives[chosen], population.negatives[chosen])
        interval = bootstrap_interval(sample, average_precision, resamples=400, seed=repeat)
        covered += interval.low <= truth <= interval.high
    # 95% nominal; the Monte-Carlo standard error of 200 repeats is 1.5 points, and the
    # percentile interval of 40 images runs a little narrow
    assert 0.88 <= covered / repeats <= 0.99


def test_paired_p_values_are_uniform_under_the_null_and_small_for_a_real_gain():
    rng = np.random.default_rng(2)
    null = [
        paired_comparison(
            *simulated_pair(rng, 30, (2.0, 2.0)), average_precision, resamples=300, seed=repeat
        ).p_value
        for repeat in range(150)
    ]
    assert stats.kstest(null, "uniform").pvalue > 0.01
    comparison = paired_comparison(
        *simulated_pair(rng, 30, (1.0, 3.0)), average_precision, resamples=500, seed=0
    )
    assert comparison.difference > 0 and comparison.low > 0 and comparison.p_value < 0.01


def test_comparisons_need_the_same_images_and_report_nan_without_positives():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="same test images"):
        paired_comparison(simulated_set(rng, 3), simulated_set(rng, 4), average_precision)
    empty = ImageHistograms(
        BINS, np.zeros((3, BINS + 1), np.int64), np.ones((3, BINS + 1), np.int64)
    )
    interval = bootstrap_interval(empty, average_precision, resamples=20)
    assert math.isnan(interval.estimate) and math.isnan(interval.low) and interval.resamples == 0


@pytest.mark.parametrize("scale", [3_000_000, 2**50])  # float64 products, then int64 fallback
def test_resampled_sums_equal_integer_matrix_products_exactly(scale):
    rng = np.random.default_rng(3)
    positives = rng.integers(0, scale, (40, 11), dtype=np.int64)
    negatives = rng.integers(0, scale, (40, 11), dtype=np.int64)
    weights = resample_weights(40, 25, 1)
    replicates = ImageHistograms(10, positives, negatives).replicates(weights)
    np.testing.assert_array_equal([h.positives for h in replicates], weights @ positives)
    np.testing.assert_array_equal([h.negatives for h in replicates], weights @ negatives)
