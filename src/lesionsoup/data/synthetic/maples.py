"""MAPLES-DR's synthetic stand-in (layouts: ``lesionsoup.data.datasets.maples``).

Layouts (a) and (b) from the same images: the ``maples-dr`` export as
``MAPLES`` (square crops of the fundus, ``EXPORT_SIDE`` px a side at scale 1)
and the release as ``RELEASE_TREE`` (split folders in mixed case, MESSIDOR
folders with one in lower case, and unlabelled MESSIDOR photographs among them);
both carry the vessel and optic-disc fields the adapter skips.
"""

from __future__ import annotations

import cv2
import numpy as np

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets.maples import IMAGE_FIELD, LESION_FOLDERS, RELEASE_FOLDER
from lesionsoup.data.synthetic.fundus import SyntheticFundus
from lesionsoup.data.synthetic.layout import SyntheticImage, SyntheticLayout, binary, save
from lesionsoup.data.synthetic.registry import register

#: MESSIDOR's photograph sizes, (height, width).
MESSIDOR_SIZES = ((960, 1440), (1488, 2240), (1536, 2304))
#: Fields of both layouts that are no lesion (the adapter skips them), with the
#: ``SyntheticFundus`` attribute the synthetic trees fill them from.
OTHER_FIELDS = {"vessels": "vessels", "opticDisc": "optic_disc"}
#: The synthetic trees: the release's name next to the export (named ``MAPLES``), the
#: export's square side at scale 1, and folder names whose case varies on purpose.
RELEASE_TREE = "MAPLES-release"
EXPORT_SIDE = 1500
RELEASE_SPLITS = {"train": "Train", "test": "test"}
MESSIDOR_FOLDERS = ("Base11", "base12", "Base21", "Base34")


def _names(count: int) -> list[str]:
    return [
        f"2005{index % 9 + 1:02d}{index % 28 + 1:02d}_{38000 + 37 * index:05d}_{100 + index:04d}_PP"
        for index in range(count)
    ]


def _messidor_names(count: int) -> list[str]:
    """Unlabelled MESSIDOR photographs: a quarter as many as the labelled ones, at least two."""
    return [
        f"2006{index % 9 + 1:02d}{index % 28 + 1:02d}_{61000 + 41 * index:05d}_{index:04d}_PP"
        for index in range(max(2, count // 4))
    ]


def _fields(fundus: SyntheticFundus, masks: dict[Lesion, np.ndarray]) -> dict[str, np.ndarray]:
    """Every synthetic mask by its export field name: the drawn lesions and the other fields."""
    lesions = {LESION_FOLDERS[lesion]: mask for lesion, mask in masks.items()}
    return {**lesions, **{field: getattr(fundus, name) for field, name in OTHER_FIELDS.items()}}


def _square_crop(array: np.ndarray, side: int, interpolation: int) -> np.ndarray:
    """The centred square of a landscape photograph resized to ``side`` (what ``maples-dr``
    exports: the fundus region cropped out of the MESSIDOR image)."""
    height, width = array.shape[:2]
    left = (width - height) // 2
    return cv2.resize(array[:, left : left + height], (side, side), interpolation=interpolation)


def _write(
    image: SyntheticImage,
    fundus: SyntheticFundus,
    masks: dict[Lesion, np.ndarray],
    rng: np.random.Generator,
) -> None:
    _write_messidor(image, fundus, masks, rng)
    fields = _fields(fundus, masks)
    release = image.tree(RELEASE_TREE) / RELEASE_FOLDER / RELEASE_SPLITS[image.split]
    for field, mask in fields.items():
        biomarker = field[0].upper() + field[1:]  # cottonWoolSpots -> CottonWoolSpots
        save(release / biomarker / f"{image.name}.png", binary(mask))

    export = image.tree() / image.split
    side = max(32, round(EXPORT_SIDE * image.scale))
    photograph = _square_crop(fundus.image, side, cv2.INTER_AREA)
    save(export / IMAGE_FIELD / f"{image.name}.jpg", photograph)
    for field, mask in fields.items():
        square = _square_crop(binary(mask), side, cv2.INTER_LINEAR)
        save(export / field / f"{image.name}.png", np.where(square >= 128, 255, 0).astype(np.uint8))


def _write_messidor(
    image: SyntheticImage,
    fundus: SyntheticFundus,
    masks: dict[Lesion, np.ndarray],
    rng: np.random.Generator,
) -> None:
    folder = MESSIDOR_FOLDERS[image.index % len(MESSIDOR_FOLDERS)]
    save(image.tree(RELEASE_TREE) / folder / f"{image.name}.tif", fundus.image)


register(
    "MAPLES",
    SyntheticLayout(
        stream=4,
        sizes=MESSIDOR_SIZES,
        names=_names,
        write=_write,
        trees=(RELEASE_TREE,),
        companion=SyntheticLayout(
            stream=5, sizes=MESSIDOR_SIZES, names=_messidor_names, write=_write_messidor
        ),
    ),
)
