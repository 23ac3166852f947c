"""MESSIDOR photographs with MAPLES-DR labels: official train / test, two layouts.

(a) the export of the ``maples-dr`` Python package::

    <root>/{train,test}/fundus/<name>.<jpg|png>
    <root>/{train,test}/<field>/<name>.png      fields in LESION_FOLDERS; others ignored

(b) the release archive next to the MESSIDOR download::

    <root>/MAPLES-DR/{train,test}/<Biomarker>/<name>.png
    <root>/Base11 ... Base34/<name>.tif

In (b) an image is indexed when some biomarker folder labels its name; the
MESSIDOR folders hold unlabelled images too, which are skipped. Option
``messidor_root`` points at MESSIDOR folders kept elsewhere; the root may also
be the ``MAPLES-DR`` folder itself, with MESSIDOR then looked up next to it.
Letter case of folder names never matters.

The synthetic stand-in writes both trees from the same images: the export as
``MAPLES`` (square crops of the fundus, 1500 px a side at scale 1) and the
release as ``MAPLES-release`` (split folders in mixed case, MESSIDOR folders
with one in lower case, and unlabelled MESSIDOR photographs among them); both
carry the vessel and optic-disc fields the adapter skips.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets.native import (
    DatasetError,
    NativeImage,
    attach_mask,
    existing_root,
    find_child,
    find_path,
    image_files,
    require_folder,
    subfolders,
)
from lesionsoup.data.datasets.registry import DatasetAdapter, register
from lesionsoup.data.datasets.synthetic_layout import (
    SyntheticImage,
    SyntheticLayout,
    binary,
    save,
)
from lesionsoup.data.fundus import SyntheticFundus

#: Official splits and their sizes.
OFFICIAL_SPLITS = {"train": 138, "test": 60}
RELEASE_FOLDER = "MAPLES-DR"
IMAGE_FIELD = "fundus"
#: Mask folder of each lesion: a field of (a) and a biomarker of (b), up to case.
LESION_FOLDERS = {
    Lesion.EX: "exudates",
    Lesion.HE: "hemorrhages",
    Lesion.MA: "microaneurysms",
    Lesion.CWS: "cottonWoolSpots",
    Lesion.NV: "neovascularization",
}
MESSIDOR_FOLDER = re.compile(r"base\d+", re.IGNORECASE)
#: MESSIDOR's photograph sizes, (height, width).
MESSIDOR_SIZES = ((960, 1440), (1488, 2240), (1536, 2304))
#: Fields of both layouts that are no lesion (the adapter skips them), with the
#: ``SyntheticFundus`` attribute the synthetic trees fill them from.
OTHER_FIELDS = {"vessels": "vessels", "opticDisc": "optic_disc"}
#: The synthetic trees: the release's name next to the export (named ``MAPLES``), the
#: export's square side at scale 1, and folder names whose case varies on purpose.
RELEASE_TREE = "MAPLES-release"
EXPORT_SIDE = 1500
SYNTHETIC_RELEASE_SPLITS = {"train": "Train", "test": "test"}
SYNTHETIC_MESSIDOR_FOLDERS = ("Base11", "base12", "Base21", "Base34")


def scan(root: Path, options: Mapping[str, Any]) -> list[NativeImage]:
    root = existing_root(root)
    messidor_option = options["messidor_root"]
    if any(find_path(root, [split, IMAGE_FIELD]) for split in OFFICIAL_SPLITS):
        if messidor_option is not None:
            raise ValueError(
                f"{root}: option 'messidor_root' applies to the MAPLES-DR release layout only; "
                "this is a maples-dr package export with its own fundus images"
            )
        return _scan_export(root)
    if root.name.casefold() == RELEASE_FOLDER.casefold():
        labels, messidor = root, root.parent
    elif (found := find_child(root, RELEASE_FOLDER)) is not None and found.is_dir():
        labels, messidor = found, root
    else:
        raise DatasetError(
            f"{root}: expected '{{train,test}}/{IMAGE_FIELD}' (maples-dr package export) or "
            f"'{RELEASE_FOLDER}/{{train,test}}' (release archive) under it"
        )
    if messidor_option is not None:
        messidor = existing_root(messidor_option)
    return _scan_release(labels, messidor)


def _lesion_of(folder: Path) -> Lesion | None:
    name = folder.name.casefold()
    return next((les for les, known in LESION_FOLDERS.items() if known.casefold() == name), None)


def _scan_export(root: Path) -> list[NativeImage]:
    images: list[NativeImage] = []
    for split in OFFICIAL_SPLITS:
        split_folder = require_folder(root, split)
        in_split = {
            name: NativeImage(name, path, split)
            for name, path in image_files(require_folder(split_folder, IMAGE_FIELD)).items()
        }
        for folder in subfolders(split_folder):
            lesion = _lesion_of(folder)
            if lesion is not None:
                for name, mask in image_files(folder).items():
                    attach_mask(in_split, name, lesion, mask)
        images.extend(in_split.values())
    return images


def _messidor_images(messidor: Path) -> dict[str, Path]:
    """MESSIDOR images by name, from ``Base*`` folders and the folder itself."""
    folders = [messidor, *(f for f in subfolders(messidor) if MESSIDOR_FOLDER.fullmatch(f.name))]
    found: dict[str, Path] = {}
    for folder in folders:
        for name, path in image_files(folder).items():
            if name in found:
                raise DatasetError(f"two MESSIDOR images named '{name}': {found[name]} and {path}")
            found[name] = path
    return found


def _scan_release(labels: Path, messidor: Path) -> list[NativeImage]:
    messidor_images = _messidor_images(messidor)
    images: list[NativeImage] = []
    for split in OFFICIAL_SPLITS:
        masks: dict[str, dict[Lesion, list[Path]]] = {}
        first_label: dict[str, Path] = {}
        for folder in subfolders(require_folder(labels, split)):
            lesion = _lesion_of(folder)
            for name, mask in image_files(folder).items():
                first_label.setdefault(name, mask)
                lesion_masks = masks.setdefault(name, {})
                if lesion is not None:
                    lesion_masks[lesion] = [mask]
        for name in sorted(masks):
            if name not in messidor_images:
                raise DatasetError(
                    f"{first_label[name]}: labelled image '{name}' has no MESSIDOR image "
                    f"in {messidor} or its Base* folders"
                )
            images.append(NativeImage(name, messidor_images[name], split, masks[name]))
    return images


def _synthetic_names(count: int) -> list[str]:
    return [
        f"2005{index % 9 + 1:02d}{index % 28 + 1:02d}_{38000 + 37 * index:05d}_{100 + index:04d}_PP"
        for index in range(count)
    ]


def _messidor_names(count: int) -> list[str]:
    """Unlabelled MESSIDOR photographs: a quarter as many as the labelled ones, at least two."""
    return [
        f"2006{index % 9 + 1:02d}{index % 28 + 1:02d}_{61000 + 41 * index:05d}_{index:04d}_PP"
        for index in range(max(2, count // 4))
    ]


def _fields(fundus: SyntheticFundus, masks: dict[Lesion, np.ndarray]) -> dict[str, np.ndarray]:
    """Every synthetic mask by its export field name: the drawn lesions and the other fields."""
    lesions = {LESION_FOLDERS[lesion]: mask for lesion, mask in masks.items()}
    return {**lesions, **{field: getattr(fundus, name) for field, name in OTHER_FIELDS.items()}}


def _square_crop(array: np.ndarray, side: int, interpolation: int) -> np.ndarray:
    """The centred square of a landscape photograph resized to ``side`` (what ``maples-dr``
    exports: the fundus region cropped out of the MESSIDOR image)."""
    height, width = array.shape[:2]
    left = (width - height) // 2
    return cv2.resize(array[:, left : left + height], (side, side), interpolation=interpolation)


def _write_synthetic(
    image: SyntheticImage,
    fundus: SyntheticFundus,
    masks: dict[Lesion, np.ndarray],
    rng: np.random.Generator,
) -> None:
    _write_messidor(image, fundus, masks, rng)
    fields = _fields(fundus, masks)
    release = image.tree(RELEASE_TREE) / RELEASE_FOLDER / SYNTHETIC_RELEASE_SPLITS[image.split]
    for field, mask in fields.items():
        biomarker = field[0].upper() + field[1:]  # cottonWoolSpots -> CottonWoolSpots
        save(release / biomarker / f"{image.name}.png", binary(mask))

    export = image.tree() / image.split
    side = max(32, round(EXPORT_SIDE * image.scale))
    photograph = _square_crop(fundus.image, side, cv2.INTER_AREA)
    save(export / IMAGE_FIELD / f"{image.name}.jpg", photograph)
    for field, mask in fields.items():
        square = _square_crop(binary(mask), side, cv2.INTER_LINEAR)
        save(export / field / f"{image.name}.png", np.where(square >= 128, 255, 0).astype(np.uint8))


def _write_messidor(
    image: SyntheticImage,
    fundus: SyntheticFundus,
    masks: dict[Lesion, np.ndarray],
    rng: np.random.Generator,
) -> None:
    folder = SYNTHETIC_MESSIDOR_FOLDERS[image.index % len(SYNTHETIC_MESSIDOR_FOLDERS)]
    save(image.tree(RELEASE_TREE) / folder / f"{image.name}.tif", fundus.image)


register(
    DatasetAdapter(
        name="MAPLES",
        scan=scan,
        official_splits=OFFICIAL_SPLITS,
        options={
            "messidor_root": {
                "type": ["string", "null"],
                "default": None,
                "description": "Folder holding MESSIDOR's Base11..Base34 when not next to the "
                "MAPLES-DR release.",
            }
        },
        synthetic=SyntheticLayout(
            stream=4,
            sizes=MESSIDOR_SIZES,
            names=_synthetic_names,
            write=_write_synthetic,
            trees=(RELEASE_TREE,),
            companion=SyntheticLayout(
                stream=5, sizes=MESSIDOR_SIZES, names=_messidor_names, write=_write_messidor
            ),
        ),
    )
)
