"""Field-of-view detection: where the circular fundus disc is in a photograph.

The disc is found on a subsampled copy (one pixel per cell, fast): the
brightest channel is thresholded relative to the image's own bright level,
with a floor well above the noise of a black border; an opening cuts thin
bridges to text or labels, a closing rejoins the disc across dark vessels
that reach its rim, the largest connected region is kept and its holes
(vessels, haemorrhages) are filled. Channel order does not matter, so
BGR images from OpenCV can be passed as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: Longest side of the working grid the disc is searched on (at most).
WORKING_SIDE = 1024
#: The disc is brighter than this fraction of the image's 99th percentile...
RELATIVE_LEVEL = 0.1
#: ...and brighter than this absolute level (JPEG noise in black borders stays below).
NOISE_FLOOR = 10
#: A field of view smaller than this fraction of the image is not plausible.
MIN_AREA_FRACTION = 0.05


class NoFieldOfView(ValueError):
    """No plausible fundus disc in the image."""


@dataclass(frozen=True)
class FieldOfView:
    """The disc mask on a working grid: cell (i, j) covers native pixels
    ``[i * step, (i + 1) * step) x [j * step, (j + 1) * step)``."""

    mask: np.ndarray  # bool (h, w)
    step: int
    native_h: int
    native_w: int

    def box(self) -> tuple[int, int, int, int]:
        """Native bounding box ``(y0, x0, y1, x1)`` (exclusive ends) of the disc."""
        y0, x0, y1, x1 = fov_box(self.mask)
        step = self.step
        return y0 * step, x0 * step, min(self.native_h, y1 * step), min(self.native_w, x1 * step)

    def resampled(self, crop: tuple[int, int, int, int], out_h: int, out_w: int) -> np.ndarray:
        """The mask over the native box ``crop`` stretched onto an ``out_h`` x ``out_w`` grid."""
        y0, x0, y1, x1 = crop
        # output pixel centre -> native coordinate -> working cell index (cell centres at .5)
        ay, ax = (y1 - y0) / out_h / self.step, (x1 - x0) / out_w / self.step
        by, bx = y0 / self.step + 0.5 * ay - 0.5, x0 / self.step + 0.5 * ax - 0.5
        plane = cv2.warpAffine(
            self.mask.view(np.uint8) * np.uint8(255),
            np.array([[ax, 0.0, bx], [0.0, ay, by]]),
            (out_w, out_h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        return plane >= 128

    def native_mask(self) -> np.ndarray:
        """The mask at native resolution."""
        return self.resampled((0, 0, self.native_h, self.native_w), self.native_h, self.native_w)


def _brightness(image: np.ndarray, step: int) -> np.ndarray:
    """The brightest channel, sampled at the centre of every ``step`` x ``step`` cell."""
    sampled = image[step // 2 :: step, step // 2 :: step]
    if sampled.ndim == 2:
        return np.ascontiguousarray(sampled)
    return np.maximum(np.maximum(sampled[..., 0], sampled[..., 1]), sampled[..., 2])


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region not connected to the border filled."""
    padded = np.pad(mask.view(np.uint8), 1)
    cv2.floodFill(padded, None, (0, 0), 2)
    return padded[1:-1, 1:-1] != 2


def find_fov(image: np.ndarray, working_side: int = WORKING_SIDE) -> FieldOfView:
    """The field of view of an (H, W, 3) or (H, W) uint8 photograph, on a working grid."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected an 8-bit image, got {image.dtype} {image.shape}")
    native_h, native_w = image.shape[:2]
    step = max(1, math.ceil(max(native_h, native_w) / working_side))
    brightness = _brightness(image, step)

    histogram = np.bincount(brightness.ravel(), minlength=256)
    bright_level = int(np.searchsorted(np.cumsum(histogram), 0.99 * brightness.size))
    threshold = max(NOISE_FLOOR, RELATIVE_LEVEL * bright_level)
    candidate = (brightness >= threshold).view(np.uint8)

    radius = max(1, round(0.005 * max(brightness.shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    candidate = cv2.morphologyEx(candidate, cv2.MORPH_OPEN, kernel)  # cut bridges to text
    candidate = cv2.morphologyEx(candidate, cv2.MORPH_CLOSE, kernel)  # rejoin across vessels
    count, regions, stats, _ = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    if count < 2:
        raise NoFieldOfView(f"no pixel brighter than {threshold:.0f} (image too dark or empty)")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = _fill_holes(regions == largest)

    fraction = mask.mean()
    if fraction < MIN_AREA_FRACTION:
        raise NoFieldOfView(
            f"largest bright region covers {fraction:.1%} of the image "
            f"(at least {MIN_AREA_FRACTION:.0%} expected for a fundus disc)"
        )
    return FieldOfView(mask=mask, step=step, native_h=native_h, native_w=native_w)


def detect_fov(image_rgb: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask of the fundus disc; raises ``NoFieldOfView`` if none is found."""
    return find_fov(image_rgb).native_mask()


def fov_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box ``(y0, x0, y1, x1)`` (exclusive ends) of the true pixels of ``mask``."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise NoFieldOfView("empty field-of-view mask")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1
