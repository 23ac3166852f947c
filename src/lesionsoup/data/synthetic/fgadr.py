"""FGADR's synthetic stand-in (layout: ``lesionsoup.data.datasets.fgadr``).

Anti-aliased masks (grey edges, which the adapter's ``mask_threshold`` 1 reads
as lesion), IRMA and NV too, and the grading table without a header, as the
original.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets.fgadr import GRADES_FILE, IMAGES_FOLDER, LESION_FOLDERS, ROOT_FOLDER
from lesionsoup.data.synthetic.fundus import SyntheticFundus
from lesionsoup.data.synthetic.layout import (
    SyntheticImage,
    SyntheticLayout,
    Written,
    binary,
    save,
)
from lesionsoup.data.synthetic.registry import register


def _names(count: int) -> list[str]:
    return [f"{index + 1:04d}_{1 + index % 3}" for index in range(count)]


def _anti_aliased(mask: np.ndarray) -> np.ndarray:
    """0/255 mask with soft grey edges outside the lesion (the lesion itself stays 255)."""
    mask = binary(mask)
    return np.maximum(mask, cv2.GaussianBlur(mask, (0, 0), 0.8))


def _write(
    image: SyntheticImage,
    fundus: SyntheticFundus,
    masks: dict[Lesion, np.ndarray],
    rng: np.random.Generator,
) -> None:
    root = image.tree() / ROOT_FOLDER
    save(root / IMAGES_FOLDER / f"{image.name}.png", fundus.image)
    for lesion, folder in LESION_FOLDERS.items():
        save(root / folder / f"{image.name}.png", _anti_aliased(masks[lesion]))


def _write_grades(root: Path, rows: list[Written]) -> None:
    lines = "".join(f"{row.name}.png,{row.grade}\n" for row in rows)  # no header, like the original
    atomic_write_bytes(root / ROOT_FOLDER / GRADES_FILE, lines.encode())


register(
    "FGADR",
    SyntheticLayout(
        stream=2,
        sizes=((1280, 1280),),
        names=_names,
        write=_write,
        extras=True,
        summary=_write_grades,
    ),
)
