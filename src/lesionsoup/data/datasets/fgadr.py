"""FGADR, segmentation set: no official split.

Layout (the root is ``Seg-set``, the folder holding it, or the outer copy of an
archive extracted twice; entries not listed here are reported)::

    Seg-set/Original_Images/<id>.png
    Seg-set/<Lesion>_Masks/<id>.png        (see LESION_FOLDERS; "Hemohedge" is the real spelling)
    Seg-set/DR_Seg_Grading_Label.csv       (grades; not needed here)

FGADR ids (``0001_2``) encode no patient, so each image is its own patient in
the seeded split: images of one person may fall on both sides.

The masks are anti-aliased (grey edges), so any non-zero value is lesion
(``mask_threshold`` 1).
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
)
from lesionsoup.data.datasets.registry import DatasetAdapter, register

ROOT_FOLDER = "Seg-set"
IMAGES_FOLDER = "Original_Images"
GRADES_FILE = "DR_Seg_Grading_Label.csv"
LESION_FOLDERS = {
    Lesion.MA: "Microaneurysms_Masks",
    Lesion.HE: "Hemohedge_Masks",
    Lesion.EX: "HardExudate_Masks",
    Lesion.CWS: "SoftExudate_Masks",
    Lesion.IRMA: "IRMA_Masks",
    Lesion.NV: "Neovascularization_Masks",
}


def scan(root: Path, options: Mapping[str, Any]) -> list[NativeImage]:
    base = locate_root(root, "FGADR", (IMAGES_FOLDER,))
    image_folder = require_folder(base, IMAGES_FOLDER)
    images = {
        image_id: NativeImage(image_id, path)
        for image_id, path in image_files(image_folder).items()
    }
    unrecognised = stray_files(image_folder) + read_mask_folders(
        base, LESION_FOLDERS, images, known=(IMAGES_FOLDER, GRADES_FILE)
    )
    report_unrecognised("FGADR", unrecognised, images.values(), options[UNRECOGNISED_OPTION])
    return list(images.values())


register(
    DatasetAdapter(
        name="FGADR",
        scan=scan,
        mask_threshold=1,
    )
)
