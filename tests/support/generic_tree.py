"""A tree of the generic dataset format (tests/data/test_datasets_generic.py), shared with the
workflow's test of it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from support.native_trees import write_image, write_mask

#: Two eyes of each of three patients; only some images have haemorrhage masks.
IDS = ("p1_L", "p1_R", "p2_L", "p2_R", "p3_L", "p3_R")


MASKS = {"EX": "annotations/EX/{stem}_EX.png", "HE": "annotations/HE/{stem}.png"}


def write_generic_tree(
    root: Path, ids: Iterable[str] = IDS, width: int = 12, height: int = 8
) -> Path:
    """``images/<id>.jpg``, an EX mask for every image and an HE mask for the left eyes."""
    for image_id in ids:
        write_image(root / "images" / f"{image_id}.jpg", width, height)
        write_mask(root / "annotations" / "EX" / f"{image_id}_EX.png", width, height)
        if image_id.endswith("_L"):
            write_mask(root / "annotations" / "HE" / f"{image_id}.png", width, height)
    return root
