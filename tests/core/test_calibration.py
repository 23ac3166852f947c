"""Expected calibration error and reliability points from histograms, against a direct
computation on the raw probabilities and hand-worked toy cases."""

import math

import numpy as np
import pytest

from lesionsoup.core.metrics import (
    CALIBRATION_BINS,
    POOLED_METRICS,
    LesionHistogram,
    calibration_bin_of,
    expected_calibration_error,
    reliability,
)


def raw_ece(probs: np.ndarray, target: np.ndarray, calibration_bins: int) -> float:
    """Guo et al.'s ECE on raw probabilities: equal-width bins [j/M, (j+1)/M), 1.0 in the last."""
    which = np.minimum((probs * calibration_bins).astype(int), calibration_bins - 1)
    total = 0.0
    for j in range(calibration_bins):
        members = which == j
        if members.any():
            gap = abs(target[members].mean() - probs[members].mean())
            total += members.sum() / probs.size * gap
    return total


def histogram_of(probs: np.ndarray, target: np.ndarray, bins: int) -> LesionHistogram:
    histogram = LesionHistogram(bins)
    histogram.update(probs, target, np.ones(probs.shape, bool))
    return histogram


def labelled(seed: int, pixels: int, power: float) -> tuple[np.ndarray, np.ndarray]:
    """Uniform probabilities p, labels drawn as Bernoulli(p ** power)."""
    rng = np.random.default_rng(seed)
    probs = rng.random(pixels).astype(np.float32)
    probs[:50] = 1.0  # saturated sigmoids: the top bin
    return probs, rng.random(pixels) < probs.astype(np.float64) ** power


@pytest.mark.parametrize("bins", [10, 100, 2000])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("power", "population"), [(1.0, 0.0), (2.0, 1 / 6)])
def test_ece_is_within_half_a_bin_of_the_raw_computation(bins, seed, power, population):
    # Bernoulli(p): calibrated, ECE -> 0; Bernoulli(p^2): ECE -> integral of p - p^2 = 1/6
    probs, target = labelled(seed, 200_000, power)
    ece = expected_calibration_error(histogram_of(probs, target, bins))
    reference = raw_ece(probs.astype(np.float64), target, CALIBRATION_BINS)
    assert abs(ece - reference) <= 1 / (2 * bins) + 1e-12
    assert ece == pytest.approx(population, abs=0.01 + 1 / (2 * bins))


def test_a_perfectly_and_a_badly_calibrated_toy_case():
    positives, negatives = np.zeros(11, np.int64), np.zeros(11, np.int64)
    positives[[2, 7]], negatives[[2, 7]] = [1, 3], [3, 1]  # centres 0.25, 0.75: 1/4 and 3/4
    assert expected_calibration_error(LesionHistogram(10, positives, negatives)) == 0.0
    # ten pixels at 0.95, half positive; ten at exactly 1.0 (the top bin), none positive
    positives, negatives = np.zeros(11, np.int64), np.zeros(11, np.int64)
    positives[9], negatives[9], negatives[10] = 5, 5, 10
    points = reliability(LesionHistogram(10, positives, negatives))
    assert points.pixels.tolist() == [0] * 9 + [20] and points.positives[-1] == 5
    assert points.confidence[-1] == pytest.approx(0.975) and points.accuracy[-1] == 0.25
    assert np.isnan(points.accuracy[:9]).all() and np.isnan(points.confidence[:9]).all()
    ece = expected_calibration_error(LesionHistogram(10, positives, negatives))
    assert ece == pytest.approx(0.725)
    assert expected_calibration_error(LesionHistogram(10, negatives=negatives)) == pytest.approx(
        (5 * 0.95 + 10 * 1.0) / 15
    )


def test_ece_without_pixels_is_nan_and_without_positives_is_the_mean_probability():
    assert math.isnan(expected_calibration_error(LesionHistogram(10)))
    probs = np.array([0.021, 0.134, 0.134, 0.612], np.float32)  # bins 2, 13, 13, 61
    histogram = histogram_of(probs, np.zeros(4, bool), 100)
    assert expected_calibration_error(histogram) == pytest.approx((0.025 + 0.135 * 2 + 0.615) / 4)
    assert POOLED_METRICS["ece"] is expected_calibration_error


def test_calibration_bins_hold_the_histogram_bins_of_their_probabilities():
    assert calibration_bin_of(20, 10).tolist() == [*np.repeat(np.arange(10), 2), 9]
    # 15 bins of a 2000-bin histogram: a straddling bin goes where its centre lies
    which = calibration_bin_of(2000, 15)
    assert which[132] == 0 and which[133] == 1  # centre 0.06675 > 1/15 and which[-1] == 14
    assert np.all(np.diff(which) >= 0) and set(which.tolist()) == set(range(15))
