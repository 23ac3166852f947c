"""DDR, lesion-segmentation part: official train / valid / test.

Layout (the root is ``lesion_segmentation``, a folder above it such as
``DDR-dataset``, or the outer copy of an archive extracted twice)::

    lesion_segmentation/{train,valid,test}/image/<stem>.jpg
    lesion_segmentation/{train,test}/label/{EX,HE,MA,SE}/<stem>.tif
    lesion_segmentation/valid/segmentation label/{EX,HE,MA,SE}/<stem>.tif

Either label-folder name is accepted in every split. A missing mask file
means no lesion; any other entry is reported (``native.report_unrecognised``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


register(
    DatasetAdapter(
        name="DDR",
        scan=scan,
        official_splits=OFFICIAL_SPLITS,
    )
)
