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

Graders drew coarse outlines (the ``coarse`` annotation style). The synthetic
stand-in writes mask files and folders only where there are lesions, marks a
share of the lesions 127, splits haemorrhages into retinal and preretinal ones,
and writes the grade table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.lesions import Lesion
from lesionsoup.data.annotation_style import COARSE
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
from lesionsoup.data.datasets.registry import DatasetAdapter, register
from lesionsoup.data.datasets.synthetic_layout import (
    SyntheticImage,
    SyntheticLayout,
    Written,
    save,
)
from lesionsoup.data.fundus import SyntheticFundus

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
#: Share of synthetic lesion components marked excluded, and of haemorrhages made preretinal.
EXCLUDED_SHARE = 0.15
PRERETINAL_SHARE = 0.15


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


def _synthetic_names(count: int) -> list[str]:
    """``<patient>_<eye>``: both eyes for most patients, one eye for every fourth."""
    names: list[str] = []
    patient = 0
    while len(names) < count:
        eyes = EYES[:1] if patient % 4 == 3 else EYES
        names += [f"{10001 + 7 * patient}_{eye}" for eye in eyes]
        patient += 1
    return names[:count]


def _with_excluded(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """255 on the lesion, ``EXCLUDED_VALUE`` on the components the authors excluded."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    values = np.where(rng.random(count) < EXCLUDED_SHARE, EXCLUDED_VALUE, 255).astype(np.uint8)
    values[0] = 0
    return values[labels]


def _write_synthetic(
    image: SyntheticImage,
    fundus: SyntheticFundus,
    masks: dict[Lesion, np.ndarray],
    rng: np.random.Generator,
) -> None:
    root = image.tree()
    save(root / IMAGES_FOLDER / f"{image.name}.jpg", fundus.image)
    haemorrhages = cv2.connectedComponents(masks[Lesion.HE].astype(np.uint8), connectivity=8)[1]
    preretinal_ids = np.flatnonzero(rng.random(haemorrhages.max() + 1) < PRERETINAL_SHARE)
    preretinal = np.isin(haemorrhages, preretinal_ids[preretinal_ids > 0])
    files = {
        "microaneurysm": masks[Lesion.MA],
        "retinal_hemorrhage": masks[Lesion.HE] & ~preretinal,
        "preretinal_hemorrhage": preretinal,
        "hard_exudate": masks[Lesion.EX],
        "cotton_wool_spots": masks[Lesion.CWS],
        "neovascularization": masks[Lesion.NV],
    }
    for native_name, mask in files.items():
        if mask.any():  # no file, and no folder for a healthy eye, where there is no lesion
            save(root / MASKS_FOLDER / image.name / f"{native_name}.png", _with_excluded(mask, rng))


def _write_synthetic_grades(root: Path, rows: list[Written]) -> None:
    lines = "image id,grade\n" + "".join(f"{row.name},{row.grade}\n" for row in rows)
    atomic_write_bytes(root / GRADES_FILE, lines.encode())


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
        synthetic=SyntheticLayout(
            stream=3,
            sizes=((896, 896),),
            names=_synthetic_names,
            write=_write_synthetic,
            extras=True,
            summary=_write_synthetic_grades,
        ),
    )
)
