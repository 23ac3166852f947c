"""Lesion-wise counts of one image and lesion: connected components, detected or not.

A lesion is a connected component of the reference mask, a predicted lesion one of the
hard prediction, both restricted to the valid pixels (``core.metrics.valid_mask``; a
component cut by the ignore mask counts as its pieces) and connected through any of
their 8 neighbours (``scipy.ndimage.label`` with a 3x3 structure), at the evaluation
resolution.

Match rule (Metrics Reloaded, Maier-Hein et al. 2024: the "mask overlap" localization
criterion, any overlap at all, with many-to-one assignment allowed, as for small
structures): a reference lesion is detected when at least one of its pixels is predicted;
a predicted lesion is a true positive (matched) when at least one of its pixels is a
reference pixel. One predicted component touching two lesions thus detects both and is
one matched prediction; two predicted components on one lesion are two matched
predictions and one detection.

Each component is counted in the size bin of its own area in pixels (``SIZE_BINS``,
bounds ``size_edges``: one set for microaneurysms, one for the other lesions): reference
lesions by theirs, predicted lesions by theirs. ``component_counts`` returns, per size
bin, the four integer counts of ``COMPONENT_COUNTS``; counts of images and of test sets
merge by addition.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from lesionsoup.core.lesions import Lesion

#: The size bins of the lesion-wise counts, smallest first.
SIZE_BINS: tuple[str, ...] = ("small", "medium", "large")
#: The lower area bounds, in pixels at the evaluation resolution, of the ``medium`` and
#: ``large`` bins: microaneurysms (a few pixels across) apart, every other lesion together.
MA_SIZE_EDGES: tuple[int, ...] = (10, 50)
OTHER_SIZE_EDGES: tuple[int, ...] = (100, 1000)
#: The columns of ``component_counts``: reference components, those detected, predicted
#: components, those matched.
COMPONENT_COUNTS: tuple[str, ...] = ("reference", "detected", "predicted", "matched")
#: 8-connectivity.
STRUCTURE = np.ones((3, 3), bool)


def size_edges(lesion: Lesion | str) -> tuple[int, ...]:
    """The lower bounds of the size bins after the first, for one lesion."""
    return MA_SIZE_EDGES if Lesion(lesion) == Lesion.MA else OTHER_SIZE_EDGES


def size_bins_in_words() -> str:
    """The size bins, as ``conventions`` states them."""

    def bounds(edges: Sequence[int]) -> str:
        low, high = edges
        return f"small < {low} px, medium {low} to {high - 1} px, large >= {high} px"

    return f"MA: {bounds(MA_SIZE_EDGES)}; other lesions: {bounds(OTHER_SIZE_EDGES)}"


def empty_counts() -> np.ndarray:
    return np.zeros((len(SIZE_BINS), len(COMPONENT_COUNTS)), np.int64)


def _binned(areas: np.ndarray, hit: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """(size bins, 2): the components, and those ``hit``, per size bin of their areas."""
    which = np.searchsorted(np.asarray(edges), areas, side="right")
    size = len(SIZE_BINS)
    return np.stack(
        [np.bincount(which, minlength=size), np.bincount(which[hit], minlength=size)], axis=1
    )


def component_counts(
    reference: np.ndarray, predicted: np.ndarray, valid: np.ndarray, edges: Sequence[int]
) -> np.ndarray:
    """(size bins, 4) int64 counts of ``COMPONENT_COUNTS`` of one image and lesion.

    ``reference``, ``predicted`` and ``valid`` are boolean (H, W) masks; ``edges`` the
    lesion's ``size_edges``. Components are labelled once each; every overlap is one
    ``np.bincount`` over the labels (no loop over components).
    """
    for name, mask in (("reference", reference), ("predicted", predicted), ("valid", valid)):
        if mask.dtype != np.bool_ or mask.ndim != 2 or mask.shape != reference.shape:
            raise ValueError(f"{name} must be a boolean (H, W) mask like the reference")
    if len(edges) != len(SIZE_BINS) - 1 or list(edges) != sorted(set(edges)):
        raise ValueError(f"size edges {edges} are not {len(SIZE_BINS) - 1} increasing bounds")
    reference, predicted = reference & valid, predicted & valid
    counts = empty_counts()
    if not reference.any() and not predicted.any():
        return counts
    truth, lesions = ndimage.label(reference, STRUCTURE)
    guess, guesses = ndimage.label(predicted, STRUCTURE)
    # per reference component: its area, and its pixels predicted; likewise per prediction
    areas = np.bincount(truth[reference], minlength=lesions + 1)[1:]
    found = np.bincount(truth[predicted], minlength=lesions + 1)[1:] > 0
    predicted_areas = np.bincount(guess[predicted], minlength=guesses + 1)[1:]
    matched = np.bincount(guess[reference], minlength=guesses + 1)[1:] > 0
    counts[:, 0:2] = _binned(areas, found, edges)
    counts[:, 2:4] = _binned(predicted_areas, matched, edges)
    return counts


def image_component_counts(
    predicted: np.ndarray, references: np.ndarray, valid: np.ndarray, lesions: Sequence[Lesion]
) -> list[np.ndarray]:
    """``component_counts`` of each lesion of one image: ``predicted`` and ``references``
    are boolean (L, H, W) in ``lesions`` order, ``valid`` (H, W)."""
    return [
        component_counts(reference, guess, valid, size_edges(lesion))
        for guess, reference, lesion in zip(predicted, references, lesions, strict=True)
    ]
