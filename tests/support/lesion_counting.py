"""An independent count of lesion-wise components for the tests: scikit-image's labelling
(not scipy.ndimage, which lesionsoup uses) and a plain loop over the components."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.measure import label

from lesionsoup.core.lesion_components import SIZE_BINS


def size_bin(area: int, edges: Sequence[int]) -> int:
    """The size bin of an area, written out: below the first edge, below the second, above."""
    if area < edges[0]:
        return 0
    return 1 if area < edges[1] else 2


def naive_counts(
    reference: np.ndarray, predicted: np.ndarray, valid: np.ndarray, edges: Sequence[int]
) -> np.ndarray:
    """(size bins, 4): reference, detected, predicted, matched components, one by one."""
    reference, predicted = reference & valid, predicted & valid
    truth = label(reference, connectivity=2)  # 8-connected
    guess = label(predicted, connectivity=2)
    counts = np.zeros((len(SIZE_BINS), 4), np.int64)
    for k in range(1, truth.max() + 1):
        pixels = truth == k
        row = size_bin(int(pixels.sum()), edges)
        counts[row, 0] += 1
        counts[row, 1] += bool((pixels & predicted).any())
    for k in range(1, guess.max() + 1):
        pixels = guess == k
        row = size_bin(int(pixels.sum()), edges)
        counts[row, 2] += 1
        counts[row, 3] += bool((pixels & reference).any())
    return counts
