"""DDR, lesion-segmentation part: official train / valid / test.

Layout (the root is the folder holding ``lesion_segmentation`` or that folder)::

    lesion_segmentation/{train,valid,test}/image/<stem>.jpg
    lesion_segmentation/{train,test}/label/{EX,HE,MA,SE}/<stem>.tif
    lesion_segmentation/valid/segmentation label/{EX,HE,MA,SE}/<stem>.tif

Either label-folder name is accepted in every split. A missing mask file
means no lesion.

The synthetic stand-in writes a mask file per lesion (often all black), the
``segmentation label`` folder in ``valid`` only, and photographs of DDR's many
sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets.native import (
    DatasetError,
    NativeImage,
    attach_mask,
    find_path,
    image_files,
    locate_root,
    require_folder,
)
from lesionsoup.data.datasets.registry import DatasetAdapter, register
from lesionsoup.data.datasets.synthetic_layout import SyntheticImage, SyntheticLayout, binary, save
from lesionsoup.data.fundus import SyntheticFundus

ROOT_FOLDER = "lesion_segmentation"
#: Official splits and their sizes.
OFFICIAL_SPLITS = {"train": 383, "valid": 149, "test": 225}
IMAGES_FOLDER = "image"
LABEL_FOLDER = "label"
VALID_LABEL_FOLDER = "segmentation label"  # the download's name in valid/
LABEL_FOLDERS = (LABEL_FOLDER, VALID_LABEL_FOLDER)
LESION_FOLDERS = {Lesion.EX: "EX", Lesion.HE: "HE", Lesion.MA: "MA", Lesion.CWS: "SE"}


def scan(root: Path, options: Mapping[str, Any]) -> list[NativeImage]:
    base = locate_root(root, ROOT_FOLDER)
    images: list[NativeImage] = []
    for split in OFFICIAL_SPLITS:
        split_folder = require_folder(base, split)
        in_split = {
            image_id: NativeImage(image_id, path, split)
            for image_id, path in image_files(require_folder(split_folder, IMAGES_FOLDER)).items()
        }
        label_folder = next(
            (found for name in LABEL_FOLDERS if (found := find_path(split_folder, [name]))), None
        )
        if label_folder is None:
            raise DatasetError(
                f"{split_folder}: expected a folder {' or '.join(map(repr, LABEL_FOLDERS))} in it"
            )
        for lesion, lesion_folder in LESION_FOLDERS.items():
            folder = find_path(label_folder, [lesion_folder])
            if folder is None:
                continue
            for stem, mask in image_files(folder).items():
                attach_mask(in_split, stem, lesion, mask)
        images.extend(in_split.values())
    return images


def _synthetic_names(count: int) -> list[str]:
    return [f"{7 + i % 3:03d}-{1000 + 37 * i:04d}-{100 + 100 * (i % 2)}" for i in range(count)]


def _write_synthetic(
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
    DatasetAdapter(
        name="DDR",
        scan=scan,
        official_splits=OFFICIAL_SPLITS,
        synthetic=SyntheticLayout(
            stream=1,
            sizes=((1728, 2592), (1536, 2048), (1934, 1956), (1024, 1280), (1200, 1600)),
            names=_synthetic_names,
            write=_write_synthetic,
        ),
    )
)
