"""Annotation styles: fine is faithful, coarse is measurably blobbier, configuration overrides."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lesionsoup.core.lesions import TRAINED
from lesionsoup.data.datasets import default_styles
from lesionsoup.data.synthetic.annotation_style import (
    DEFAULT_STYLES,
    AnnotationStyle,
    resolve_styles,
)
from lesionsoup.data.synthetic.fundus import SyntheticFundus, render_fundus


@pytest.fixture(scope="module")
def photos() -> list[SyntheticFundus]:
    return [
        render_fundus(np.random.default_rng(seed), 360, 540, 2.0, cws_probability=1.0)
        for seed in range(4)
    ]


def _components(mask: np.ndarray) -> np.ndarray:
    """Areas of the 8-connected components."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return stats[1:, cv2.CC_STAT_AREA]


def _boundary(mask: np.ndarray) -> np.ndarray:
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return mask & ~eroded


def _edge_strength(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


def _measure(photos: list[SyntheticFundus], style: AnnotationStyle) -> dict[str, float]:
    areas, components, boundary, total_area, edge = [], [], 0, 0, []
    for fundus in photos:
        strength = _edge_strength(fundus.image)
        for lesion in TRAINED:
            mask = style.annotate(fundus.lesions[lesion], fundus.unit)
            areas += list(_components(mask))
            components.append(len(_components(mask)))
            boundary += _boundary(mask).sum()
            total_area += mask.sum()
            edge.append(strength[_boundary(mask)])
    return {
        "mean_area": float(np.mean(areas)),
        "components": float(np.mean(components)),
        "boundary_per_area": boundary / total_area,
        "edge_agreement": float(np.concatenate(edge).mean()),
    }


def test_fine_style_keeps_the_true_masks(photos: list[SyntheticFundus]) -> None:
    for fundus in photos:
        for mask in fundus.lesions.values():
            assert np.array_equal(DEFAULT_STYLES["fine"].annotate(mask, fundus.unit), mask)


def test_coarse_style_is_measurably_coarser(photos: list[SyntheticFundus]) -> None:
    fine = _measure(photos, DEFAULT_STYLES["fine"])
    coarse = _measure(photos, DEFAULT_STYLES["coarse"])
    assert coarse["mean_area"] > 3 * fine["mean_area"]
    assert coarse["components"] < 0.85 * fine["components"]  # nearby lesions merged
    assert coarse["boundary_per_area"] < 0.65 * fine["boundary_per_area"]  # smoother, blobbier
    assert coarse["edge_agreement"] < 0.6 * fine["edge_agreement"]  # outlines off the image edges


def test_coarse_annotation_covers_the_lesion(photos: list[SyntheticFundus]) -> None:
    for fundus in photos:
        for mask in fundus.lesions.values():
            coarse = DEFAULT_STYLES["coarse"].annotate(mask, fundus.unit)
            assert not (mask & ~coarse).any()


def test_merge_bridges_nearby_blobs_and_min_area_drops_small_ones() -> None:
    mask = np.zeros((60, 60), bool)
    mask[20:30, 10:20] = mask[20:30, 24:34] = True  # 4 px gap
    mask[50, 50] = True
    merged = AnnotationStyle(merge_px=3).annotate(mask)
    assert len(_components(merged)) == 2
    assert len(_components(AnnotationStyle(min_area_px=4).annotate(mask))) == 2
    assert not AnnotationStyle(min_area_px=4).annotate(mask)[50, 50]
    scaled = AnnotationStyle(merge_px=3).annotate(mask, unit=0.25)  # 1 px closing: no bridge
    assert len(_components(scaled)) == 3


def test_resolve_styles_overrides_defaults() -> None:
    default = resolve_styles(default_styles())
    assert default["RETLES"] == DEFAULT_STYLES["coarse"]
    assert default["IDRID"] == DEFAULT_STYLES["fine"]
    custom = resolve_styles(
        default_styles(),
        {"coarse": {"dilate_px": 9}, "sloppy": {"smooth_px": 2}},
        {"DDR": "coarse", "FGADR": "sloppy"},
    )
    assert custom["DDR"].dilate_px == 9
    assert custom["DDR"].merge_px == DEFAULT_STYLES["coarse"].merge_px
    assert custom["FGADR"] == AnnotationStyle(smooth_px=2)


@pytest.mark.parametrize(
    ("styles", "mapping", "message"),
    [
        ({"coarse": {"blur": 1}}, None, "unknown parameters"),
        (None, {"DDR": "nonexistent"}, "undefined annotation styles"),
        ({"fine": {"dilate_px": -1}}, None, "must be >= 0"),
    ],
)
def test_resolve_styles_rejects_bad_configuration(
    styles: dict | None, mapping: dict | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_styles(default_styles(), styles, mapping)
