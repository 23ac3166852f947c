"""Label planes whose image colour encodes each pixel's label: a check that both moved alike."""

from __future__ import annotations

import numpy as np

from lesionsoup.core.lesions import FOV_BIT, IGNORE_BIT, Lesion

SIZE = 96
BLOCK = 16
#: Label values with several bits each, as a real label plane has.
LABEL_VALUES = np.array(
    [
        0,
        FOV_BIT,
        FOV_BIT | Lesion.EX.bit,
        FOV_BIT | Lesion.HE.bit,
        FOV_BIT | Lesion.MA.bit | Lesion.HE.bit,
        FOV_BIT | Lesion.CWS.bit,
        FOV_BIT | IGNORE_BIT,
        FOV_BIT | Lesion.EX.bit | IGNORE_BIT,
    ],
    dtype=np.uint8,
)
#: One colour per label value, far apart; value 0 is black like the affine border fill.
PALETTE = np.array(
    [[0, 0, 0], [250, 0, 0], [0, 250, 0], [0, 0, 250], [250, 250, 0], [0, 250, 250], [250, 0, 250],
     [250, 250, 250]],
    dtype=np.uint8,
)  # fmt: skip


def coded_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A blocky label plane and an image whose colour encodes each pixel's label."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(len(LABEL_VALUES), size=(SIZE // BLOCK, SIZE // BLOCK))
    codes = np.kron(codes, np.ones((BLOCK, BLOCK), dtype=int))
    return PALETTE[codes], LABEL_VALUES[codes]


def interior(labels: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood lies in the image and carries one label value."""
    padded = np.pad(labels, radius, constant_values=255)  # 255: no label value
    same = np.ones(labels.shape, dtype=bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            same &= padded[dy : dy + labels.shape[0], dx : dx + labels.shape[1]] == labels
    return same


def assert_aligned(image: np.ndarray, labels: np.ndarray, radius: int = 2) -> None:
    """Labels hold only the coded values, and away from label edges the image shows their colour."""
    assert set(np.unique(labels)) <= set(LABEL_VALUES)  # no invented bit mixtures
    checked = interior(labels, radius)
    assert checked.mean() > 0.25
    expected = PALETTE[np.searchsorted(LABEL_VALUES, labels)]
    difference = np.abs(image.astype(int) - expected.astype(int)).max(axis=-1)
    assert (difference[checked] <= 2).all()


def geometric_only(preset: str) -> dict:
    """A preset without its colour steps."""
    from lesionsoup.training.augment import COLOUR_STEPS

    return {"preset": preset, **dict.fromkeys(COLOUR_STEPS)}
