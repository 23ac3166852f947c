"""FGADR, segmentation set: no official split.

Layout (the root is the folder holding ``Seg-set`` or that folder)::

    Seg-set/Original_Images/<id>.png
    Seg-set/<Lesion>_Masks/<id>.png        (see LESION_FOLDERS; "Hemohedge" is the real spelling)
    Seg-set/DR_Seg_Grading_Label.csv       (grades; not needed here)

FGADR ids (``0001_2``) encode no patient, so each image is its own patient in
the seeded split: images of one person may fall on both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets.native import (
    Adapter,
    NativeImage,
    attach_mask,
    find_path,
    image_files,
    locate_root,
    require_folder,
)

ROOT_FOLDER = "Seg-set"
IMAGES_FOLDER = "Original_Images"
LESION_FOLDERS = {
    Lesion.MA: "Microaneurysms_Masks",
    Lesion.HE: "Hemohedge_Masks",
    Lesion.EX: "HardExudate_Masks",
    Lesion.CWS: "SoftExudate_Masks",
    Lesion.IRMA: "IRMA_Masks",
    Lesion.NV: "Neovascularization_Masks",
}


def scan(root: Path, options: Mapping[str, Any]) -> list[NativeImage]:
    base = locate_root(root, ROOT_FOLDER)
    images = {
        image_id: NativeImage(image_id, path)
        for image_id, path in image_files(require_folder(base, IMAGES_FOLDER)).items()
    }
    for lesion, lesion_folder in LESION_FOLDERS.items():
        folder = find_path(base, [lesion_folder])
        if folder is None:
            continue
        for stem, mask in image_files(folder).items():
            attach_mask(images, stem, lesion, mask)
    return list(images.values())


ADAPTER = Adapter(name="FGADR", scan=scan)
