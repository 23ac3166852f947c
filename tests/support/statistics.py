"""Simulated per-image histograms of two models (tests/evaluation/test_statistics.py)."""

from __future__ import annotations

import numpy as np

from lesionsoup.core.metrics import LesionHistogram
from lesionsoup.evaluation.statistics import ImageHistograms

BINS = 100


def simulated_image(
    rng: np.random.Generator, separation: float, bins: int = BINS, positives: int | None = None
) -> LesionHistogram:
    """One image: 2000 valid pixels, ``positives`` of them (random by default) positive,
    scores from two Betas set apart by ``separation``."""
    positives = int(rng.integers(20, 200)) if positives is None else positives
    scores = np.concatenate(
        [rng.beta(2 + separation, 2, positives), rng.beta(2, 2 + separation, 2000 - positives)]
    )
    target = np.arange(2000) < positives
    histogram = LesionHistogram(bins)
    histogram.update(scores.astype(np.float32), target, np.ones(2000, bool))
    # lesion-wise counts from a generator of their own, so the pixels' draws stay as they were
    counts = np.random.default_rng([positives, round(scores.sum() * 1e3)]).integers(0, 6, (3, 4))
    counts[:, 1] = np.minimum(counts[:, 1], counts[:, 0])
    counts[:, 3] = np.minimum(counts[:, 3], counts[:, 2])
    return LesionHistogram(bins, histogram.positives, histogram.negatives, None, counts)


def simulated_pair(rng, images: int, separations: tuple[float, float]):
    """Two models on the same images (the same positive pixels), each with its own scores."""
    positives = rng.integers(20, 200, images)
    return tuple(
        ImageHistograms.stack(
            [simulated_image(rng, separation, positives=int(n)) for n in positives]
        )
        for separation in separations
    )
