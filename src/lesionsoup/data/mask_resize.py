"""The rule by which a binary mask is brought onto another pixel grid.

* ``preserve`` (the default): no lesion is erased. Downscaling to the cache
  keeps a pixel where at least half of it is lesion and draws a lesion that
  rule would lose at its own scale (``preprocess``); placing an ROI-space mask
  in its photograph marks every pixel a lesion pixel touches (``roi``).
* ``nearest``: every output pixel copies the value of one input pixel, as
  ``cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)``, the rule of
  Playout & Cheriet's loaders. A lesion smaller than the sampling step (a
  microaneurysm of a few native pixels) may vanish. Thresholding before or
  after such a resize gives the same mask: both pick a source pixel per output
  pixel, and thresholding looks at one pixel at a time.

The rule is its own module because both ``roi`` and ``preprocess`` (which
imports ``roi``) apply it.
"""

from __future__ import annotations

from typing import Literal, get_args

import cv2
import numpy as np

MaskResize = Literal["preserve", "nearest"]
#: The rules, default first (the command line's choices and the schema's enum).
MASK_RESIZE_RULES: tuple[str, ...] = get_args(MaskResize)


def check_mask_resize(rule: str) -> MaskResize:
    """``rule`` if it names a mask resizing rule; ``ValueError`` naming the choices otherwise."""
    if rule not in MASK_RESIZE_RULES:
        raise ValueError(f"mask resize rule must be one of {MASK_RESIZE_RULES}, got {rule!r}")
    return rule  # type: ignore[return-value]


def resize_nearest(mask: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """``mask`` (2-D, or up to 4 channels) on an (out_h, out_w) grid by nearest neighbour."""
    return cv2.resize(mask, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
