"""IDRiD's synthetic stand-in (layout: ``lesionsoup.data.datasets.idrid``).

TIFF masks 0/255, soft-exudate files only where there are some, and optic-disc
masks; every image is diseased, as in IDRiD's segmentation set.
"""

from __future__ import annotations

import numpy as np

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets.idrid import (
    IMAGES_FOLDER,
    LESION_FOLDERS,
    MASKS_FOLDER,
    OPTIC_DISC_FOLDER,
    ROOT_FOLDER,
    SPLIT_FOLDERS,
)
from lesionsoup.data.synthetic.fundus import SyntheticFundus
from lesionsoup.data.synthetic.layout import SyntheticImage, SyntheticLayout, binary, save
from lesionsoup.data.synthetic.registry import register


def _names(count: int) -> list[str]:
    return [f"IDRiD_{index + 1:02d}" for index in range(count)]


def _write(
    image: SyntheticImage,
    fundus: SyntheticFundus,
    masks: dict[Lesion, np.ndarray],
    rng: np.random.Generator,
) -> None:
    root = image.tree() / ROOT_FOLDER
    subset = SPLIT_FOLDERS[image.split]
    save(root / IMAGES_FOLDER / subset / f"{image.name}.jpg", fundus.image)
    truth = root / MASKS_FOLDER / subset
    for lesion, (folder, suffix) in LESION_FOLDERS.items():
        if lesion is not Lesion.CWS or masks[lesion].any():  # SE files only where there are some
            save(truth / folder / f"{image.name}{suffix}.tif", binary(masks[lesion]))
    folder, suffix = OPTIC_DISC_FOLDER
    save(truth / folder / f"{image.name}{suffix}.tif", binary(fundus.optic_disc))


register(
    "IDRID",
    SyntheticLayout(
        stream=0, sizes=((2848, 4288),), names=_names, write=_write, healthy_eyes=False
    ),
)
