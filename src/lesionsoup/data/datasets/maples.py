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
"""

from __future__ import annotations

import re
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
    find_child,
    find_path,
    image_files,
    require_folder,
    subfolders,
)

SPLITS = ("train", "test")
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


def scan(root: Path, options: Mapping[str, Any]) -> list[NativeImage]:
    root = existing_root(root)
    messidor_option = options["messidor_root"]
    if any(find_path(root, [split, IMAGE_FIELD]) for split in SPLITS):
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
    for split in SPLITS:
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
    for split in SPLITS:
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


ADAPTER = Adapter(name="MAPLES", scan=scan, options={"messidor_root": None})
