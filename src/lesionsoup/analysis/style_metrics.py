"""Annotation style of a dataset, measured on its cached masks, and a clustering of datasets.

Per lesion component (8-connected pixels of one lesion class in a label plane):

``area``            pixels;
``irregularity``    perimeter² / (4π area): 1 for a disc, larger for ragged outlines;
``fill_ratio``      area / area of its convex hull (both in pixels): 1 for a convex blob.

Per (dataset, lesion), over the images of the cache (or of a resample of them, or of
one image: ``lesion_features``):

``components_per_image``  mean number of components per image (images without any count as 0);
``log_area_median``       median of log10 component area;
``irregularity_median``,
``fill_ratio_median``     medians over components of at least ``min_shape_area`` pixels
                          (smaller ones are too few pixels to have a shape);
``edge_contrast``         mean image gradient magnitude on the mask boundary divided by the
                          mean gradient in the bands of ``band_px`` pixels on either side of it
                          (> 1: outlines follow the image's edges; about 1: they lie off them);
``edge_balance``          mean gradient in the inner band / in the outer band (> 1: the image's
                          edges lie inside the outline, as when graders draw around a lesion
                          with a margin; < 1: the outline lies inside the visible lesion).

A dataset's style vector is each feature averaged over its lesions; the vectors are
standardised (z-scores across datasets) and clustered by Ward's hierarchical clustering.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage

from lesionsoup.core.lesions import IGNORE_BIT, TRAINED, Lesion
from lesionsoup.core.metrics import valid_mask
from lesionsoup.core.style_features import STYLE_FEATURES
from lesionsoup.data.cache import Cache

COMPONENT_COLUMNS = ("dataset", "image_id", "lesion", "area", "irregularity", "fill_ratio")


@dataclass(frozen=True)
class StyleSettings:
    min_shape_area: int = 10  # pixels; smaller components get no shape measures
    band_px: int = 2  # width of the bands inside and outside the boundary
    gradient_sigma: float = 1.0  # Gaussian smoothing before the Sobel gradient

    def __post_init__(self) -> None:
        if self.min_shape_area < 1 or self.band_px < 1 or self.gradient_sigma <= 0:
            raise ValueError(f"invalid annotation-style settings {self}")


def gradient_magnitude(image: np.ndarray, sigma: float) -> np.ndarray:
    """Sobel gradient magnitude (float32) of the smoothed green channel of an RGB image."""
    green = cv2.GaussianBlur(image[..., 1].astype(np.float32), (0, 0), sigma)
    dx = cv2.Sobel(green, cv2.CV_32F, 1, 0)
    dy = cv2.Sobel(green, cv2.CV_32F, 0, 1)
    return cv2.magnitude(dx, dy)


def component_shapes(mask: np.ndarray, min_shape_area: int) -> list[tuple[int, float, float]]:
    """(area, irregularity, fill ratio) of each 8-connected component of a boolean mask.

    Shape measures are NaN for components smaller than ``min_shape_area`` pixels.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
    shapes = []
    for index in range(1, count):
        x, y, w, h, area = stats[index]
        if area < min_shape_area:
            shapes.append((int(area), math.nan, math.nan))
            continue
        crop = (labels[y : y + h, x : x + w] == index).astype(np.uint8)
        crop = np.pad(crop, 1)
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        outline = max(contours, key=len)
        perimeter = cv2.arcLength(outline, closed=True)
        hull = np.zeros_like(crop)
        cv2.fillConvexPoly(hull, cv2.convexHull(outline), 1)
        shapes.append((int(area), perimeter**2 / (4 * math.pi * area), float(area / hull.sum())))
    return shapes


def _ring_kernel(width: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))


def boundary_gradients(
    mask: np.ndarray, gradient: np.ndarray, valid: np.ndarray, band_px: int
) -> np.ndarray:
    """Gradient sums and pixel counts on the boundary, the inner band and the outer band.

    The boundary is the mask's pixels with a 4-neighbour outside it; the inner
    band the ``band_px`` pixels inside the boundary, the outer band the
    ``band_px`` pixels outside the mask. Returns ``[sum, count]`` for each, in that order.
    """
    mask8 = mask.astype(np.uint8)
    interior = cv2.erode(mask8, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)))
    regions = (
        mask8 & ~interior,
        interior & ~cv2.erode(interior, _ring_kernel(band_px)),
        cv2.dilate(mask8, _ring_kernel(band_px)) & ~mask8,
    )
    sums = []
    for region in regions:
        pixels = region.astype(bool) & valid
        sums += [float(gradient[pixels].sum()), float(pixels.sum())]
    return np.array(sums)


def _edge_features(sums: np.ndarray) -> tuple[float, float]:
    """Edge contrast (boundary / both bands) and edge balance (inner / outer band)."""
    boundary, boundary_n, inner, inner_n, outer, outer_n = sums

    def mean(total: float, count: float) -> float:
        return total / count if count else math.nan

    nearby = mean(inner + outer, inner_n + outer_n)
    contrast = mean(boundary, boundary_n) / nearby if nearby > 0 else math.nan
    outside = mean(outer, outer_n)
    balance = mean(inner, inner_n) / outside if outside > 0 else math.nan
    return contrast, balance


#: One row per (image, lesion) of ``measure_cache``: its component count and the
#: gradient sums and pixel counts of ``boundary_gradients``, which add over images.
IMAGE_COLUMNS = (
    "dataset",
    "image_id",
    "lesion",
    "components",
    "boundary_sum",
    "boundary_n",
    "inner_sum",
    "inner_n",
    "outer_sum",
    "outer_n",
)
_SUMS = list(IMAGE_COLUMNS[4:])


def measure_cache(
    cache: Cache,
    dataset: str,
    lesions: Sequence[Lesion] = TRAINED,
    settings: StyleSettings = StyleSettings(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Component table (``COMPONENT_COLUMNS``) and image table (``IMAGE_COLUMNS``) of a cache.

    ``lesion_features`` turns them into style features of the whole cache, of any
    resample of its images, or of each image.
    """
    components: list[tuple] = []
    images: list[tuple] = []
    for image_id in cache.ids:
        labels = np.asarray(cache.labels(image_id))
        gradient = gradient_magnitude(np.asarray(cache.image(image_id)), settings.gradient_sigma)
        valid = valid_mask(labels)
        for lesion in lesions:
            mask = ((labels & lesion.bit) != 0) & ((labels & IGNORE_BIT) == 0)
            shapes = component_shapes(mask, settings.min_shape_area)
            components += [(dataset, image_id, lesion.value, *shape) for shape in shapes]
            sums = (
                boundary_gradients(mask, gradient, valid, settings.band_px) if shapes else [0] * 6
            )
            images.append((dataset, image_id, lesion.value, len(shapes), *sums))
    return (
        pd.DataFrame(components, columns=list(COMPONENT_COLUMNS)),
        pd.DataFrame(images, columns=list(IMAGE_COLUMNS)),
    )


def lesion_features(
    components: pd.DataFrame, images: pd.DataFrame, by: Sequence[str] = ("dataset",)
) -> pd.DataFrame:
    """Style features per ``by`` group (datasets, or ``("dataset", "image_id")`` for each
    image) and lesion, from the image rows and the components of those images.

    A row repeated in ``images`` (an image drawn twice by a bootstrap) counts twice, and
    so must its components in ``components``.
    """
    keys = [*by, "lesion"]
    grouped = components.groupby(keys, sort=False)
    rows = []
    for key, own_images in images.groupby(keys, sort=True):
        own = grouped.get_group(key) if key in grouped.groups else components.iloc[:0]
        contrast, balance = _edge_features(own_images[_SUMS].sum().to_numpy(float))
        rows.append(
            {
                **dict(zip(keys, key, strict=True)),
                "images": len(own_images),
                "images_with_lesion": int((own_images["components"] > 0).sum()),
                "components": int(own_images["components"].sum()),
                "components_per_image": float(own_images["components"].mean()),
                "log_area_median": _median(np.log10(own["area"])),
                "irregularity_median": _median(own["irregularity"]),
                "fill_ratio_median": _median(own["fill_ratio"]),
                "edge_contrast": contrast,
                "edge_balance": balance,
            }
        )
    return pd.DataFrame(rows)


def _median(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.median()) if len(values) else math.nan


def dataset_features(
    features: pd.DataFrame, columns: Sequence[str] = STYLE_FEATURES, by: str | list[str] = "dataset"
) -> pd.DataFrame:
    """One row per dataset (or ``by`` group): each feature averaged over the lesions that
    have a value."""
    missing = sorted(set(columns) - set(features.columns))
    if missing:
        raise ValueError(f"unknown style features {missing}; known: {list(STYLE_FEATURES)}")
    return features.groupby(by, sort=True)[list(columns)].mean()


def standardise(table: pd.DataFrame) -> pd.DataFrame:
    """Z-scores per column across rows; a constant column becomes 0, a missing value 0 (mean)."""
    spread = table.std(ddof=0).replace(0, 1.0)
    return ((table - table.mean()) / spread).fillna(0.0)


@dataclass(frozen=True)
class StyleClustering:
    features: pd.DataFrame  # dataset -> raw style features
    standardised: pd.DataFrame
    linkage: np.ndarray  # scipy linkage matrix (Ward)
    clusters: pd.Series  # dataset -> cluster number (1..k, numbered by first dataset)


def cluster_styles(features: pd.DataFrame, clusters: int = 2) -> StyleClustering:
    """Ward clustering of datasets on their standardised style features."""
    if len(features) < 2:
        raise ValueError(f"clustering annotation styles needs >= 2 datasets, got {len(features)}")
    if not 1 <= clusters <= len(features):
        raise ValueError(f"clusters must be in 1..{len(features)}, got {clusters}")
    scores = standardise(features)
    tree = linkage(scores.to_numpy(), method="ward")
    raw = fcluster(tree, t=clusters, criterion="maxclust")
    renumber: dict[int, int] = {}
    for label in raw:
        renumber.setdefault(int(label), len(renumber) + 1)
    labels = pd.Series([renumber[int(x)] for x in raw], index=features.index, name="cluster")
    return StyleClustering(features, scores, tree, labels)


def measure_datasets(
    caches: Mapping[str, Cache],
    lesions: Sequence[Lesion] = TRAINED,
    settings: StyleSettings = StyleSettings(),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Component and image tables (``measure_cache``) of several caches, concatenated."""
    measured = [measure_cache(cache, name, lesions, settings) for name, cache in caches.items()]
    return (
        pd.concat([components for components, _ in measured], ignore_index=True),
        pd.concat([images for _, images in measured], ignore_index=True),
    )
