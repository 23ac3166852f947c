"""Annotation styles: how a dataset's graders turn the true lesions into its masks.

A ``fine`` grader outlines each lesion tightly; a ``coarse`` one draws dilated,
smooth blobs and merges nearby small lesions into one. Which datasets' graders
work in which style is each adapter's ``style`` in the dataset registry
(``lesionsoup.data.datasets.registry``, which names the styles). Lengths are in
reference pixels (see ``lesionsoup.data.synthetic.fundus``) and are scaled to each
image by its ``unit``, so a style means the same at every image size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import cv2
import numpy as np

from lesionsoup.data.datasets.registry import COARSE, FINE


@dataclass(frozen=True)
class AnnotationStyle:
    merge_px: float = 0.0  # closing radius: gaps up to about twice this are bridged
    dilate_px: float = 0.0  # outlines drawn this far outside the lesion
    smooth_px: float = 0.0  # Gaussian sigma of the boundary smoothing
    min_area_px: float = 0.0  # components smaller than this area (reference px²) go unannotated

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) < 0:
                raise ValueError(f"annotation style: {field.name} must be >= 0")

    def annotate(self, lesion: np.ndarray, unit: float = 1.0) -> np.ndarray:
        """The annotated mask (bool) of a true lesion mask; ``unit``: px per reference px."""
        mask = lesion.astype(np.uint8)
        if self.merge_px * unit >= 0.5:
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _disk(self.merge_px * unit))
        if self.dilate_px * unit >= 0.5:
            mask = cv2.dilate(mask, _disk(self.dilate_px * unit))
        if self.smooth_px * unit >= 0.3:
            blurred = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), self.smooth_px * unit)
            mask = (blurred > 0.5).astype(np.uint8) | lesion.astype(np.uint8)
        if self.min_area_px > 0:
            mask = _drop_small(mask, self.min_area_px * unit**2)
        return mask.astype(bool)


def _disk(radius: float) -> np.ndarray:
    size = 2 * round(radius) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _drop_small(mask: np.ndarray, min_area: float) -> np.ndarray:
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[labels].astype(np.uint8)


#: The two styles of the study; a configuration overrides any of their fields.
DEFAULT_STYLES: dict[str, AnnotationStyle] = {
    FINE: AnnotationStyle(),
    COARSE: AnnotationStyle(merge_px=30.0, dilate_px=14.0, smooth_px=10.0),
}


def resolve_styles(
    defaults: Mapping[str, str],
    styles: Mapping[str, Mapping[str, float]] | None = None,
    dataset_styles: Mapping[str, str] | None = None,
) -> dict[str, AnnotationStyle]:
    """The style of each dataset, from configuration overrides on top of the defaults.

    ``defaults`` maps dataset names to style names (the registry's ``default_styles()``;
    passed in, so that this module needs no dataset). ``styles`` maps a style name to
    the fields it changes (``{"coarse": {"dilate_px": 9}}``); a new name defines a new
    style from the ``fine`` defaults. ``dataset_styles`` maps dataset names to style
    names and replaces the default entry of each dataset it names.
    """
    known = {field.name for field in fields(AnnotationStyle)}
    resolved = dict(DEFAULT_STYLES)
    for name, values in (styles or {}).items():
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"annotation style {name!r}: unknown parameters {sorted(unknown)}; "
                f"known: {sorted(known)}"
            )
        base = resolved.get(name, DEFAULT_STYLES[FINE])
        resolved[name] = replace(base, **{key: float(value) for key, value in values.items()})
    mapping = {**defaults, **(dataset_styles or {})}
    missing = {dataset: style for dataset, style in mapping.items() if style not in resolved}
    if missing:
        raise ValueError(f"datasets mapped to undefined annotation styles: {missing}")
    return {dataset: resolved[style] for dataset, style in mapping.items()}
