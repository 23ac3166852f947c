"""RETLES (Retinal-Lesions, Wei et al. 2021): no official split, two eyes per patient.

Layout (the root holds both folders, or is the folder above the one that does,
or the outer copy of an archive extracted twice)::

    images_896x896/<patient>_<left|right>.jpg
    lesion_segs_896x896/<image_id>/<lesion>.png      (255 lesion, 127 excluded)
    dr_grades.csv                                    (grades; not needed here)

A missing mask file means no lesion; images without any lesion have no mask
folder at all. Mask files of other names are reported
(``native.report_unrecognised``): an image whose mask folder holds only such
files is an error. Option ``hemorrhage``: ``union`` (default) takes retinal,
preretinal and vitreous haemorrhages together as HE, ``retinal`` only the
first. Both eyes of a patient always share a split.

Graders drew coarse outlines (the ``coarse`` annotation style).
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
    Unrecognised,
    attach_mask,
    image_files,
    locate_root,
    report_unrecognised,
    require_folder,
    stray_files,
    subfolders,
    unknown_entries,
)
from lesionsoup.data.datasets.registry import COARSE, DatasetAdapter, register

IMAGES_FOLDER = "images_896x896"
MASKS_FOLDER = "lesion_segs_896x896"
GRADES_FILE = "dr_grades.csv"
#: Mask value of the findings the dataset's authors excluded.
EXCLUDED_VALUE = 127
EYES = ("left", "right")
#: Native mask names of each lesion when haemorrhages are taken as their union.
UNION_MASKS = {
    Lesion.MA: ("microaneurysm",),
    Lesion.HE: ("retinal_hemorrhage", "preretinal_hemorrhage", "vitreous_hemorrhage"),
    Lesion.EX: ("hard_exudate",),
    Lesion.CWS: ("cotton_wool_spots",),
    Lesion.NV: ("neovascularization",),
}
#: Every mask name of the download: those above and the one no lesion class takes.
NATIVE_MASKS = frozenset({name for names in UNION_MASKS.values() for name in names}) | {
    "fibrous_proliferation"
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
    base = locate_root(root, "RETLES", (IMAGES_FOLDER, MASKS_FOLDER))
    image_folder = require_folder(base, IMAGES_FOLDER)
    images = {
        image_id: NativeImage(image_id, path)
        for image_id, path in image_files(image_folder).items()
    }
    unrecognised = unknown_entries(base, (IMAGES_FOLDER, MASKS_FOLDER, GRADES_FILE))
    unrecognised += stray_files(image_folder)
    mask_root = require_folder(base, MASKS_FOLDER)
    unrecognised += [entry for entry in stray_files(mask_root) if not entry.path.is_dir()]
    for mask_folder in subfolders(mask_root):
        unrecognised += _read_mask_folder(mask_folder, images, HEMORRHAGE_CHOICES[choice])
    report_unrecognised("RETLES", unrecognised, images.values(), options[UNRECOGNISED_OPTION])
    return list(images.values())


def _read_mask_folder(
    folder: Path, images: dict[str, NativeImage], chosen: Mapping[Lesion, tuple[str, ...]]
) -> list[Unrecognised]:
    """Attach the chosen masks of one image's folder; return its files of no known name."""
    if folder.name not in images:
        raise DatasetError(f"{folder}: mask folder whose id has no image")
    masks = image_files(folder)
    for lesion, names in chosen.items():
        for name in names:
            if name in masks:
                attach_mask(images, folder.name, lesion, masks[name])
    unknown = [Unrecognised(masks[stem], frozenset({folder.name})) for stem in sorted(masks)]
    return [entry for entry in unknown if entry.path.stem not in NATIVE_MASKS] + stray_files(folder)


register(
    DatasetAdapter(
        name="RETLES",
        scan=scan,
        options={
            "hemorrhage": {
                "enum": list(HEMORRHAGE_CHOICES),
                "default": "union",
                "description": "Haemorrhage = retinal only, or the union with preretinal and "
                "vitreous.",
            }
        },
        patient=patient_of,
        uncertain_value=EXCLUDED_VALUE,
        style=COARSE,
    )
)
