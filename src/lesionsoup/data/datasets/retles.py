"""RETLES (Retinal-Lesions, Wei et al. 2021): no official split, two eyes per patient.

Layout (the root holds both folders)::

    images_896x896/<patient>_<left|right>.jpg
    lesion_segs_896x896/<image_id>/<lesion>.png      (255 lesion, 127 excluded)
    dr_grades.csv                                    (grades; not needed here)

A missing mask file means no lesion; images without any lesion have no mask
folder at all. Option ``hemorrhage``: ``union`` (default) takes retinal,
preretinal and vitreous haemorrhages together as HE, ``retinal`` only the
first. Both eyes of a patient always share a split.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets.native import (
    Adapter,
    DatasetError,
    NativeImage,
    attach_mask,
    existing_root,
    image_files,
    require_folder,
    subfolders,
)

IMAGES_FOLDER = "images_896x896"
MASKS_FOLDER = "lesion_segs_896x896"
EYES = ("left", "right")
#: Native mask names of each lesion when haemorrhages are taken as their union.
UNION_MASKS = {
    Lesion.MA: ("microaneurysm",),
    Lesion.HE: ("retinal_hemorrhage", "preretinal_hemorrhage", "vitreous_hemorrhage"),
    Lesion.EX: ("hard_exudate",),
    Lesion.CWS: ("cotton_wool_spots",),
    Lesion.NV: ("neovascularization",),
}
HEMORRHAGE_CHOICES = {
    "union": UNION_MASKS,
    "retinal": {**UNION_MASKS, Lesion.HE: ("retinal_hemorrhage",)},
}


def patient_of(image_id: str) -> str:
    """``<patient>`` of ``<patient>_<left|right>``; an id without an eye is its own patient."""
    patient, _, eye = image_id.rpartition("_")
    return patient if patient and eye.lower() in EYES else image_id


def scan(root: Path, options: Mapping[str, Any]) -> list[NativeImage]:
    choice = options["hemorrhage"]
    if choice not in list(HEMORRHAGE_CHOICES):
        raise ValueError(f"RETLES option 'hemorrhage' must be one of {list(HEMORRHAGE_CHOICES)}")
    base = existing_root(root)
    images = {
        image_id: NativeImage(image_id, path)
        for image_id, path in image_files(require_folder(base, IMAGES_FOLDER)).items()
    }
    for mask_folder in subfolders(require_folder(base, MASKS_FOLDER)):
        if mask_folder.name not in images:
            raise DatasetError(f"{mask_folder}: mask folder whose id has no image")
        masks = image_files(mask_folder)
        for lesion, names in HEMORRHAGE_CHOICES[choice].items():
            for name in names:
                if name in masks:
                    attach_mask(images, mask_folder.name, lesion, masks[name])
    return list(images.values())


ADAPTER = Adapter(name="RETLES", scan=scan, options={"hemorrhage": "union"}, patient=patient_of)
