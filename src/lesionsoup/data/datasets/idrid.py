"""IDRiD, segmentation part: official train / test, masks ``<id>_<MA|HE|EX|SE>.tif``.

Layout (the root is ``A. Segmentation``, the folder holding it, or the outer copy
of an archive extracted twice, ``A. Segmentation/A. Segmentation``)::

    A. Segmentation/1. Original Images/{a. Training Set,b. Testing Set}/IDRiD_NN.jpg
    A. Segmentation/2. All Segmentation Groundtruths/{a. Training Set,b. Testing Set}/
        {1. Microaneurysms,2. Haemorrhages,3. Hard Exudates,4. Soft Exudates}/IDRiD_NN_<XX>.tif

About half the images have no soft-exudate file, and some test images no
haemorrhage file: a missing file means no lesion. The optic-disc masks
(``5. Optic Disc``) are not lesions and are skipped; any other entry is reported
(``native.report_unrecognised``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets.native import (
    UNRECOGNISED_OPTION,
    NativeImage,
    image_files,
    locate_root,
    read_mask_folders,
    report_unrecognised,
    require_folder,
    stray_files,
    unknown_entries,
)
from lesionsoup.data.datasets.registry import DatasetAdapter, register

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
    segmentation = locate_root(root, "IDRID", (IMAGES_FOLDER, MASKS_FOLDER))
    unrecognised = unknown_entries(segmentation, (IMAGES_FOLDER, MASKS_FOLDER))
    for folder in (IMAGES_FOLDER, MASKS_FOLDER):
        unrecognised += unknown_entries(
            require_folder(segmentation, folder), SPLIT_FOLDERS.values()
        )
    images: list[NativeImage] = []
    for split, split_folder in SPLIT_FOLDERS.items():
        image_folder = require_folder(segmentation, IMAGES_FOLDER, split_folder)
        unrecognised += stray_files(image_folder)
        in_split = {
            image_id: NativeImage(image_id, path, split)
            for image_id, path in image_files(image_folder).items()
        }
        unrecognised += read_mask_folders(
            require_folder(segmentation, MASKS_FOLDER, split_folder),
            {lesion: folder for lesion, (folder, _) in LESION_FOLDERS.items()},
            in_split,
            known=(OPTIC_DISC_FOLDER[0],),
            image_id=_image_id,
        )
        images.extend(in_split.values())
    report_unrecognised("IDRID", unrecognised, images, options[UNRECOGNISED_OPTION])
    return images


def _image_id(stem: str) -> str:
    """``IDRiD_01`` of ``IDRiD_01_MA`` (any case of the suffix); a stem without one is the id."""
    suffixes = {suffix for _, suffix in LESION_FOLDERS.values()}
    head, underscore, suffix = stem.rpartition("_")
    return head if underscore and f"_{suffix.upper()}" in suffixes else stem


register(
    DatasetAdapter(
        name="IDRID",
        scan=scan,
        official_splits=OFFICIAL_SPLITS,
    )
)
