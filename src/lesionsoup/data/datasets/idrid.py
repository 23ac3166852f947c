"""IDRiD, segmentation part: official train / test, masks ``<id>_<MA|HE|EX|SE>.tif``.

Layout (the root is the folder holding ``A. Segmentation`` or that folder)::

    A. Segmentation/1. Original Images/{a. Training Set,b. Testing Set}/IDRiD_NN.jpg
    A. Segmentation/2. All Segmentation Groundtruths/{a. Training Set,b. Testing Set}/
        {1. Microaneurysms,2. Haemorrhages,3. Hard Exudates,4. Soft Exudates}/IDRiD_NN_<XX>.tif

About half the images have no soft-exudate file: a missing file means no
lesion. The optic-disc masks (``5. Optic Disc``) are not lesions and are skipped.

The synthetic stand-in writes TIFF masks 0/255, soft-exudate files only where
there are some, and optic-disc masks; every image is diseased, as in IDRiD's
segmentation set.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets.native import (
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

ROOT_FOLDER = "A. Segmentation"
IMAGES_FOLDER = "1. Original Images"
MASKS_FOLDER = "2. All Segmentation Groundtruths"
SPLIT_FOLDERS = {"train": "a. Training Set", "test": "b. Testing Set"}
#: Official splits and their sizes.
OFFICIAL_SPLITS = {"train": 54, "test": 27}
#: Mask folder and file-name suffix of each lesion.
LESION_FOLDERS = {
    Lesion.MA: ("1. Microaneurysms", "_MA"),
    Lesion.HE: ("2. Haemorrhages", "_HE"),
    Lesion.EX: ("3. Hard Exudates", "_EX"),
    Lesion.CWS: ("4. Soft Exudates", "_SE"),
}
OPTIC_DISC_FOLDER = ("5. Optic Disc", "_OD")


def scan(root: Path, options: Mapping[str, Any]) -> list[NativeImage]:
    segmentation = locate_root(root, ROOT_FOLDER)
    images: list[NativeImage] = []
    for split, split_folder in SPLIT_FOLDERS.items():
        image_folder = require_folder(segmentation, IMAGES_FOLDER, split_folder)
        in_split = {
            image_id: NativeImage(image_id, path, split)
            for image_id, path in image_files(image_folder).items()
        }
        mask_folder = require_folder(segmentation, MASKS_FOLDER, split_folder)
        for lesion, (lesion_folder, suffix) in LESION_FOLDERS.items():
            folder = find_path(mask_folder, [lesion_folder])
            if folder is None:
                continue
            for stem, mask in image_files(folder).items():
                has_suffix = stem.upper().endswith(suffix)
                attach_mask(in_split, stem[: -len(suffix)] if has_suffix else stem, lesion, mask)
        images.extend(in_split.values())
    return images


def _synthetic_names(count: int) -> list[str]:
    return [f"IDRiD_{index + 1:02d}" for index in range(count)]


def _write_synthetic(
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
    DatasetAdapter(
        name="IDRID",
        scan=scan,
        official_splits=OFFICIAL_SPLITS,
        synthetic=SyntheticLayout(
            stream=0,
            sizes=((2848, 4288),),
            names=_synthetic_names,
            write=_write_synthetic,
            healthy_eyes=False,
        ),
    )
)
