"""Masks drawn on a region of interest, placed back into their photograph's frame.

MAPLES-DR's ``AdditionalData.zip`` keeps every map at 1500 x 1500 pixels, the
resolution its graders drew on: a square box (``MESSIDOR-ROIs.csv``) cut out of
the MESSIDOR photograph and resized. lesionsoup keeps the photograph whole and
brings the masks to it instead (the other choice, cropping the photograph to
the box, would make the geometry record describe a picture that exists on no
disk, and predictions would no longer map back to the file a user has). So a
mask is resized to the box and pasted into a zero canvas of the photograph's
size; preprocessing then treats it like any native mask.

Resizing must not erase a lesion: a microaneurysm of two ROI pixels is
still a lesion in the photograph. Upscaling by nearest neighbour keeps every
pixel; downscaling marks every photograph pixel that any lesion pixel touches.
That rule grows an outline by under one photograph pixel (the box is at most
1.6 times smaller than the map for MESSIDOR's sizes), which the cache's own
lesion-keeping downscale (``preprocess``, at least twice smaller again)
absorbs. The rule is this module's own because ``preprocess`` imports this
module, so this one cannot import ``preprocess``.

Under the ``nearest`` mask rule (``mask_resize``) the map is resized to the box
by nearest neighbour instead, so that each cache pixel remains a copy of one
pixel the graders drew, as in the authors' loaders (which read the map at its
ROI resolution and resize it by nearest neighbour); the native-resolution
evaluation places the masks by the same rule as the cache it evaluates.
"""

from __future__ import annotations

import cv2
import numpy as np

from lesionsoup.data.manifest import parse_roi
from lesionsoup.data.mask_resize import MaskResize, check_mask_resize, resize_nearest


def resize_keeping_lesions(mask: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """A 0/255 uint8 mask resized to (out_h, out_w) without losing any lesion pixel."""
    binary = np.where(mask > 0, np.uint8(255), np.uint8(0))
    if out_w >= binary.shape[1] and out_h >= binary.shape[0]:
        return cv2.resize(binary, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
    coverage = cv2.resize(binary, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return np.where(coverage > 0, np.uint8(255), np.uint8(0))


def place_in_frame(
    mask: np.ndarray, roi: str, frame_hw: tuple[int, int], resize: MaskResize = "preserve"
) -> np.ndarray:
    """The ROI-space ``mask`` resized to the box ``roi`` (a ``mask_roi`` cell) by the rule
    ``resize`` and pasted into a zero (height, width) = ``frame_hw`` canvas; 0/255 uint8.

    Any non-zero mask value is lesion (binarise by the dataset's threshold
    first where that matters). The part of the box outside the frame is cut off.
    """
    box = parse_roi(roi)
    if box is None:
        raise ValueError("place_in_frame needs a region of interest; the cell is empty")
    if mask.ndim != 2:
        raise ValueError(f"place_in_frame needs a single-channel mask, got shape {mask.shape}")
    x0, y0, x1, y1 = box
    height, width = frame_hw
    if check_mask_resize(resize) == "nearest":
        binary = np.where(mask > 0, np.uint8(255), np.uint8(0))
        resized = resize_nearest(binary, x1 - x0, y1 - y0)
    else:
        resized = resize_keeping_lesions(mask, x1 - x0, y1 - y0)
    canvas = np.zeros((height, width), np.uint8)
    top, left = max(y0, 0), max(x0, 0)
    bottom, right = min(y1, height), min(x1, width)
    if bottom > top and right > left:
        canvas[top:bottom, left:right] = resized[top - y0 : bottom - y0, left - x0 : right - x0]
    return canvas
