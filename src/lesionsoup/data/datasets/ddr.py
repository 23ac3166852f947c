"""DDR, lesion-segmentation part: official train / valid / test.

Layout (the root is the folder holding ``lesion_segmentation`` or that folder)::

    lesion_segmentation/{train,valid,test}/image/<stem>.jpg
    lesion_segmentation/{train,test}/label/{EX,HE,MA,SE}/<stem>.tif
    lesion_segmentation/valid/segmentation label/{EX,HE,MA,SE}/<stem>.tif

Either label-folder name is accepted in every split. A missing mask file
means no lesion.
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
    find_path,
    image_files,
    locate_root,
    require_folder,
)

ROOT_FOLDER = "lesion_segmentation"
SPLITS = ("train", "valid", "test")
LABEL_FOLDERS = ("label", "segmentation label")
LESION_FOLDERS = {Lesion.EX: "EX", Lesion.HE: "HE", Lesion.MA: "MA", Lesion.CWS: "SE"}


def scan(root: Path, options: Mapping[str, Any]) -> list[NativeImage]:
    base = locate_root(root, ROOT_FOLDER)
    images: list[NativeImage] = []
    for split in SPLITS:
        split_folder = require_folder(base, split)
        in_split = {
            image_id: NativeImage(image_id, path, split)
            for image_id, path in image_files(require_folder(split_folder, "image")).items()
        }
        label_folder = next(
            (found for name in LABEL_FOLDERS if (found := find_path(split_folder, [name]))), None
        )
        if label_folder is None:
            raise DatasetError(
                f"{split_folder}: expected a folder {' or '.join(map(repr, LABEL_FOLDERS))} in it"
            )
        for lesion, lesion_folder in LESION_FOLDERS.items():
            folder = find_path(label_folder, [lesion_folder])
            if folder is None:
                continue
            for stem, mask in image_files(folder).items():
                attach_mask(in_split, stem, lesion, mask)
        images.extend(in_split.values())
    return images


ADAPTER = Adapter(name="DDR", scan=scan)
