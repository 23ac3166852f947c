"""Tiny native dataset trees, written by hand for the adapter tests.

Each function takes a plan ``{split: {image_id: native mask names}}`` (or
``{image_id: names}`` for datasets without splits) and writes 12 x 8 images
and masks exactly where the real download keeps them. It returns the root.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import cv2
import numpy as np
import yaml

WIDTH, HEIGHT = 12, 8

Plan = Mapping[str, Iterable[str]]

IDRID_IMAGES = Path("A. Segmentation/1. Original Images")
IDRID_MASKS = Path("A. Segmentation/2. All Segmentation Groundtruths")
IDRID_SPLITS = {"train": "a. Training Set", "test": "b. Testing Set"}
IDRID_LESIONS = {
    "MA": "1. Microaneurysms",
    "HE": "2. Haemorrhages",
    "EX": "3. Hard Exudates",
    "SE": "4. Soft Exudates",
    "OD": "5. Optic Disc",
}
FGADR_FOLDERS = {
    "MA": "Microaneurysms_Masks",
    "HE": "Hemohedge_Masks",
    "EX": "HardExudate_Masks",
    "SE": "SoftExudate_Masks",
    "IRMA": "IRMA_Masks",
    "NV": "Neovascularization_Masks",
}


def write_image(path: Path, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """A small colour photograph (any format cv2 writes from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((height, width, 3), np.uint8)
    image[1:-1, 1:-1] = (40, 90, 160)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
    return path


def write_mask(path: Path, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """A binary mask with a small 255 square."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((height, width), np.uint8)
    mask[2:4, 2:4] = 255
    if not cv2.imwrite(str(path), mask):
        raise OSError(f"could not write {path}")
    return path


def idrid_tree(root: Path, plan: Mapping[str, Plan]) -> Path:
    """IDRiD; names are mask suffixes ``MA HE EX SE OD``."""
    for split, images in plan.items():
        folder = IDRID_SPLITS[split]
        (root / IDRID_IMAGES / folder).mkdir(parents=True, exist_ok=True)
        (root / IDRID_MASKS / folder).mkdir(parents=True, exist_ok=True)
        for image_id, suffixes in images.items():
            write_image(root / IDRID_IMAGES / folder / f"{image_id}.jpg")
            for suffix in suffixes:
                lesion_folder = IDRID_LESIONS[suffix]
                write_mask(root / IDRID_MASKS / folder / lesion_folder / f"{image_id}_{suffix}.tif")
    return root


def ddr_tree(root: Path, plan: Mapping[str, Plan]) -> Path:
    """DDR; names are lesion folders ``EX HE MA SE``."""
    base = root / "lesion_segmentation"
    for split, images in plan.items():
        labels = "segmentation label" if split == "valid" else "label"
        (base / split / "image").mkdir(parents=True, exist_ok=True)
        (base / split / labels).mkdir(parents=True, exist_ok=True)
        for stem, lesions in images.items():
            write_image(base / split / "image" / f"{stem}.jpg")
            for lesion in lesions:
                write_mask(base / split / labels / lesion / f"{stem}.tif")
    return root


def fgadr_tree(root: Path, plan: Plan) -> Path:
    """FGADR; names are keys of ``FGADR_FOLDERS``."""
    base = root / "Seg-set"
    for image_id, lesions in plan.items():
        write_image(base / "Original_Images" / f"{image_id}.png")
        for lesion in lesions:
            write_mask(base / FGADR_FOLDERS[lesion] / f"{image_id}.png")
    (base / "DR_Seg_Grading_Label.csv").write_text("image,grade\n")
    return root


def retles_tree(root: Path, plan: Plan) -> Path:
    """RETLES; names are native mask names; no names means no mask folder."""
    for image_id, lesions in plan.items():
        write_image(root / "images_896x896" / f"{image_id}.jpg")
        for lesion in lesions:
            write_mask(root / "lesion_segs_896x896" / image_id / f"{lesion}.png")
    (root / "lesion_segs_896x896").mkdir(parents=True, exist_ok=True)
    (root / "dr_grades.csv").write_text("image id,grade\n")
    return root


def maples_export_tree(root: Path, plan: Mapping[str, Plan], image_suffix: str = ".jpg") -> Path:
    """MAPLES, maples-dr package export; names are fields (``exudates`` ...)."""
    for split, images in plan.items():
        for name, fields in images.items():
            write_image(root / split / "fundus" / f"{name}{image_suffix}")
            for field in fields:
                write_mask(root / split / field / f"{name}.png")
    return root


def maples_release_tree(
    root: Path, plan: Mapping[str, Plan], release_folder: str = "MAPLES-DR"
) -> Path:
    """MAPLES-DR release labels; names are biomarker folders (``Exudates`` ...)."""
    for split, images in plan.items():
        for name, biomarkers in images.items():
            for biomarker in biomarkers:
                write_mask(root / release_folder / split / biomarker / f"{name}.png")
    return root


def messidor_tree(root: Path, folders: Mapping[str, Iterable[str]]) -> Path:
    """MESSIDOR images: ``{"Base11": names}`` written as ``root/Base11/<name>.tif``."""
    for folder, names in folders.items():
        for name in names:
            write_image(root / folder / f"{name}.tif")
    return root


def messidor_zip(archive: Path, folders: Mapping[str, Iterable[str]]) -> Path:
    """A MESSIDOR ``Base*.zip``: ``{"Base11": names}`` stored as ``Base11/<name>.tif``."""
    staging = messidor_tree(archive.with_name(f".{archive.name}.staging"), folders)
    with zipfile.ZipFile(archive, "w") as opened:
        for path in sorted(staging.rglob("*.tif")):
            opened.write(path, path.relative_to(staging).as_posix())
        opened.writestr("__MACOSX/Base11/._ignored.tif", b"resource fork")
    shutil.rmtree(staging)
    return archive


def maples_additional_tree(
    root: Path,
    plan: Mapping[str, Plan],
    boxes: Mapping[str, tuple[int, int, int, int]],
    side: int = 15,
) -> Path:
    """MAPLES-DR ``AdditionalData``; ``plan`` is ``{"train"|"test"|"duplicates": {name:
    biomarker folders}}``, ``boxes`` each name's ``(x0, y0, x1, y1)``; masks are ``side``
    pixels square. Duplicates are recorded as released: a mapping to a train sibling."""
    base = root / "AdditionalData"
    for images in plan.values():
        for name, biomarkers in images.items():
            for biomarker in biomarkers:
                write_mask(base / "annotations" / biomarker / f"{name}.png", side, side)
    sibling = next(iter(plan.get("train", {})), "")
    record = {
        "biomarkers": ["Exudates", "Hemorrhages"],
        "train": list(plan.get("train", {})),
        "test": list(plan.get("test", {})),
        "duplicates": {name: sibling for name in plan.get("duplicates", {})},
    }
    (base / "dataset_record.yaml").write_text(yaml.safe_dump(record))
    lines = ["name,x0,y0,x1,y1,W,H"]
    lines += [
        f"{name},{x0},{y0},{x1},{y1},{WIDTH},{HEIGHT}" for name, (x0, y0, x1, y1) in boxes.items()
    ]
    (base / "MESSIDOR-ROIs.csv").write_text("\n".join(lines) + "\n")
    return root


def zip_folder(folder: Path, archive: Path, top: bool = True) -> Path:
    """``folder`` as a zip file of its files (no folder entries, as many archivers
    write them): under a top folder named after it (``top``), or at the archive's top.
    The folder is removed."""
    with zipfile.ZipFile(archive, "w") as opened:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                opened.write(path, path.relative_to(folder.parent if top else folder).as_posix())
    shutil.rmtree(folder)
    return archive
