"""DDR, lesion-segmentation part: official train / valid / test.

Layout (the root is ``lesion_segmentation``, a folder above it such as
``DDR-dataset``, or the outer copy of an archive extracted twice)::

    lesion_segmentation/{train,valid,test}/image/<stem>.jpg
    lesion_segmentation/{train,test}/label/{EX,HE,MA,SE}/<stem>.tif
    lesion_segmentation/valid/segmentation label/{EX,HE,MA,SE}/<stem>.tif

Either label-folder name is accepted in every split. A missing mask file
means no lesion; any other entry is reported (``native.report_unrecognised``).

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
    UNRECOGNISED_OPTION,
    DatasetError,
    NativeImage,
    find_child,
    image_files,
    locate_root,
    read_mask_folders,
    report_unrecognised,
    require_folder,
    stray_files,
    unknown_entries,
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
    base = locate_root(root, "DDR", [f"{split}/{IMAGES_FOLDER}" for split in OFFICIAL_SPLITS])
    unrecognised = unknown_entries(base, OFFICIAL_SPLITS)
    images: list[NativeImage] = []
    for split in OFFICIAL_SPLITS:
        split_folder = require_folder(base, split)
        image_folder = require_folder(split_folder, IMAGES_FOLDER)
        unrecognised += unknown_entries(split_folder, (IMAGES_FOLDER, *LABEL_FOLDERS))
        unrecognised += stray_files(image_folder)
        in_split = {
            image_id: NativeImage(image_id, path, split)
            for image_id, path in image_files(image_folder).items()
        }
        unrecognised += read_mask_folders(_label_folder(split_folder), LESION_FOLDERS, in_split)
        images.extend(in_split.values())
    report_unrecognised("DDR", unrecognised, images, options[UNRECOGNISED_OPTION])
    return images


def _label_folder(split_folder: Path) -> Path:
    """The split's label folder under either of its names."""
    found = [folder for name in LABEL_FOLDERS if (folder := find_child(split_folder, name))]
    if not found:
        raise DatasetError(
            f"{split_folder}: expected a folder {' or '.join(map(repr, LABEL_FOLDERS))} in it"
        )
    return found[0]


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
