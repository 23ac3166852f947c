"""Rendering: geometry of the photograph, lesion sizes, and lesions visible where the masks are."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lesionsoup.core.lesions import EXTRA, TRAINED, Lesion
from lesionsoup.data.synthetic.fundus import REFERENCE_RADIUS, SyntheticFundus, render_fundus


def _render(seed: int, height: int, width: int, **kwargs: object) -> SyntheticFundus:
    return render_fundus(np.random.default_rng(seed), height, width, **kwargs)


@pytest.fixture(scope="module")
def diseased() -> list[SyntheticFundus]:
    """Photographs with many lesions of every kind (CWS on all of them)."""
    return [_render(seed, 400, 600, lesion_density=2.0, cws_probability=1.0) for seed in range(6)]


def test_landscape_photograph_is_a_centred_disc_on_black() -> None:
    fundus = _render(1, 300, 450)
    assert fundus.image.shape == (300, 450, 3) and fundus.image.dtype == np.uint8
    columns = np.flatnonzero(fundus.fov.any(axis=0))
    diameter = columns[-1] - columns[0] + 1
    assert 0.9 * 300 <= diameter <= 300
    assert abs((columns[0] + columns[-1]) / 2 - 449 / 2) < 3
    outside = fundus.image[~fundus.fov]
    assert np.median(outside) == 0
    inside = fundus.image[fundus.fov].astype(float).mean(axis=0)
    assert inside[0] > inside[1] > inside[2]  # orange-red


def test_vignetting_darkens_the_rim() -> None:
    fundus = _render(2, 400, 400, lesion_density=0.0)
    yy, xx = np.mgrid[:400, :400]
    rho = np.hypot(yy - 199.5, xx - 199.5) / 190
    background = fundus.fov & ~fundus.vessels & ~fundus.optic_disc
    red = fundus.image[..., 0].astype(float)
    assert (
        red[background & (rho > 0.85)].mean() < red[background & (rho > 0.3) & (rho < 0.6)].mean()
    )


def test_optic_disc_is_bright_and_vessels_are_dark() -> None:
    fundus = _render(3, 400, 400, lesion_density=0.0)
    brightness = fundus.image.astype(float).sum(axis=2)
    background = fundus.fov & ~fundus.vessels & ~fundus.optic_disc
    assert fundus.optic_disc.any() and fundus.vessels.any()
    assert brightness[fundus.optic_disc].mean() > brightness[background].mean() + 100
    assert brightness[fundus.vessels & ~fundus.optic_disc].mean() < brightness[background].mean()


def test_same_stream_same_photograph_and_healthy_eye_has_no_lesion() -> None:
    first, second = _render(4, 128, 160), _render(4, 128, 160)
    assert np.array_equal(first.image, second.image)
    assert all(np.array_equal(first.lesions[k], second.lesions[k]) for k in first.lesions)
    healthy = _render(5, 128, 128, lesion_density=0.0, extras=True)
    assert not any(mask.any() for mask in healthy.lesions.values())


def test_lesion_classes_and_masks_inside_the_field_of_view(diseased: list[SyntheticFundus]) -> None:
    assert set(diseased[0].lesions) == set(TRAINED)
    assert set(_render(0, 128, 128, extras=True).lesions) == set(TRAINED + EXTRA)
    for fundus in diseased:
        for lesion in TRAINED:
            mask = fundus.lesions[lesion]
            assert mask.shape == fundus.fov.shape and mask.dtype == bool
            assert mask.any(), lesion
            assert not (mask & ~fundus.fov).any()


def test_microaneurysms_are_2_to_6_px_at_reference_size_and_never_vanish() -> None:
    side = round(2 * REFERENCE_RADIUS / 0.96)
    fundus = _render(6, side, side, lesion_density=2.0)
    assert 0.95 < fundus.unit < 1.05
    _, _, stats, _ = cv2.connectedComponentsWithStats(fundus.lesions[Lesion.MA].astype(np.uint8))
    diameters = 2 * np.sqrt(stats[1:, cv2.CC_STAT_AREA] / np.pi)
    assert len(diameters) >= 10
    assert 2 <= np.median(diameters) <= 6
    tiny = _render(6, 96, 96, lesion_density=3.0)  # lesions below a pixel still get one
    assert tiny.lesions[Lesion.MA].sum() >= 5


def _ma_diameters(fundus: SyntheticFundus) -> np.ndarray:
    _, _, stats, _ = cv2.connectedComponentsWithStats(fundus.lesions[Lesion.MA].astype(np.uint8))
    return 2 * np.sqrt(stats[1:, cv2.CC_STAT_AREA] / np.pi)


def test_lesion_sizes_enlarge_only_the_named_class() -> None:
    side = round(2 * REFERENCE_RADIUS / 0.96)
    plain = _render(6, side, side, lesion_density=2.0)
    larger = _render(6, side, side, lesion_density=2.0, lesion_sizes={Lesion.MA: 3.0})
    ratio = np.median(_ma_diameters(larger)) / np.median(_ma_diameters(plain))
    assert 2.5 < ratio < 3.5
    for lesion in (Lesion.EX, Lesion.HE, Lesion.CWS):  # same stream: the rest is unchanged
        assert np.array_equal(plain.lesions[lesion], larger.lesions[lesion]), lesion


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~mask


def _inside_and_around(
    photos: list[SyntheticFundus], lesion: Lesion, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean RGB inside the lesion masks and in a ring of background around them."""
    inside, around = [], []
    for fundus in photos:
        mask = fundus.lesions[lesion]
        others = np.any([m for k, m in fundus.lesions.items() if k is not lesion], axis=0)
        ring = _ring(mask, width) & fundus.fov & ~fundus.vessels & ~others & ~fundus.optic_disc
        inside.append(fundus.image[mask].astype(float))
        around.append(fundus.image[ring].astype(float))
    return np.concatenate(inside).mean(axis=0), np.concatenate(around).mean(axis=0)


def test_red_lesions_are_darker_than_their_surroundings(diseased: list[SyntheticFundus]) -> None:
    for lesion in (Lesion.MA, Lesion.HE):
        inside, around = _inside_and_around(diseased, lesion, 4)
        assert inside.sum() < 0.8 * around.sum(), lesion
        assert inside[0] > inside[2]  # still red


def test_exudates_are_brighter_and_yellower(diseased: list[SyntheticFundus]) -> None:
    inside, around = _inside_and_around(diseased, Lesion.EX, 4)
    assert inside.sum() > around.sum() + 150
    assert inside[1] > around[1] + 60  # yellow: much more green
    assert inside[1] - inside[2] > 60  # and far less blue than green


def test_cotton_wool_spots_are_paler(diseased: list[SyntheticFundus]) -> None:
    inside, around = _inside_and_around(diseased, Lesion.CWS, 6)
    assert inside.sum() > around.sum() + 150
    saturation = lambda rgb: (rgb.max() - rgb.min()) / rgb.max()  # noqa: E731
    assert saturation(inside) < saturation(around) - 0.2


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="32x32"):
        _render(0, 16, 100)
    with pytest.raises(ValueError, match="lesion_density"):
        _render(0, 64, 64, lesion_density=-1.0)
    with pytest.raises(ValueError, match="lesion_sizes"):
        _render(0, 64, 64, lesion_sizes={Lesion.MA: 0.0})
