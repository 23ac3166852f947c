"""DDR's synthetic stand-in (layout: ``lesionsoup.data.datasets.ddr``).

A mask file per lesion (often all black), the ``segmentation label`` folder in
``valid`` only, and photographs of DDR's many sizes.
"""

from __future__ import annotations

import numpy as np

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets.ddr import (
    IMAGES_FOLDER,
    LABEL_FOLDER,
    LESION_FOLDERS,
    ROOT_FOLDER,
    VALID_LABEL_FOLDER,
)
from lesionsoup.data.synthetic.fundus import SyntheticFundus
from lesionsoup.data.synthetic.layout import SyntheticImage, SyntheticLayout, binary, save
from lesionsoup.data.synthetic.registry import register


def _names(count: int) -> list[str]:
    return [f"{7 + i % 3:03d}-{1000 + 37 * i:04d}-{100 + 100 * (i % 2)}" for i in range(count)]


def _write(
    image: SyntheticImage,
    fundus: SyntheticFundus,
    masks: dict[Lesion, np.ndarray],
    rng: np.random.Generator,
) -> None:
    root = image.tree() / ROOT_FOLDER / image.split
    save(root / IMAGES_FOLDER / f"{image.name}.jpg", fundus.image)
    labels = root / (VALID_LABEL_FOLDER if image.split == "valid" else LABEL_FOLDER)
    for lesion, folder in LESION_FOLDERS.items():
        save(labels / folder / f"{image.name}.tif", binary(masks[lesion]))


register(
    "DDR",
    SyntheticLayout(
        stream=1,
        sizes=((1728, 2592), (1536, 2048), (1934, 1956), (1024, 1280), (1200, 1600)),
        names=_names,
        write=_write,
    ),
)
