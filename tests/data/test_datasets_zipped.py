"""Datasets read in place from the zip files they are downloaded as: the manifest of a
zipped tree is the extracted tree's, each file named inside its archive, and its masks
read the same."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from support.native_trees import (
    fgadr_tree,
    idrid_tree,
    maples_additional_tree,
    maples_release_tree,
    messidor_tree,
    retles_tree,
    zip_folder,
)

from lesionsoup.data.archives import MEMBER_SEPARATOR, read_bytes, split_member_path
from lesionsoup.data.datasets import DatasetError, index_dataset
from lesionsoup.data.preprocess import BadImageError, read_mask

IDRID = {
    "train": {"IDRiD_01": ("MA", "HE", "EX"), "IDRiD_02": ("MA",)},
    "test": {"IDRiD_03": ("EX",)},
}
FGADR = {f"{i:04d}_1": ("MA", "HE") if i % 2 else ("EX",) for i in range(1, 9)}
RETLES = {f"{i}_left": ("microaneurysm", "hard_exudate") for i in range(100, 108)}
NAMES = ("20051019_38557_0100_PP", "20051020_43808_0100_PP", "20051021_51160_0100_PP")
MESSIDOR = {"Base11": NAMES[:2], "Base12": NAMES[2:]}
MAPLES = {
    "train": {NAMES[0]: ("Exudates", "Hemorrhages"), NAMES[1]: ("Exudates",)},
    "test": {NAMES[2]: ("Microaneurysms",)},
}
BOXES = {NAMES[0]: (1, 0, 9, 8), NAMES[1]: (2, -1, 10, 7), NAMES[2]: (0, 0, 8, 8)}


def _maples_tree(root: Path, layout: str) -> Path:
    messidor_tree(root / "MESSIDOR", MESSIDOR)
    if layout == "AdditionalData":
        return maples_additional_tree(root, MAPLES, BOXES)
    return maples_release_tree(root, MAPLES)


#: (dataset, tree writer, the folder that is zipped, relative to the root)
CASES = {
    "IDRID": (lambda root: idrid_tree(root, IDRID), "A. Segmentation"),
    "FGADR": (lambda root: fgadr_tree(root, FGADR), "Seg-set"),
    "RETLES": (lambda root: retles_tree(root / "retinal-lesions", RETLES), "retinal-lesions"),
    "MAPLES-release": (lambda root: _maples_tree(root, "MAPLES-DR"), "MAPLES-DR"),
    "MAPLES-additional": (lambda root: _maples_tree(root, "AdditionalData"), "AdditionalData"),
}


def _as_extracted(cell: str, base: Path) -> str:
    """A manifest cell of the zipped tree with each member path made the extracted file's."""
    paths = []
    for part in cell.split("|") if cell else []:
        inside = split_member_path(part)
        paths.append(str(base / inside[1]) if inside else part)
    return "|".join(paths)


#: The root given: the archive itself, or (MAPLES-DR's archives lie next to MESSIDOR's
#: photographs) the folder holding it.
ROOTS = [(case, True) for case in CASES] + [
    (case, False) for case in CASES if case.startswith("MAPLES")
]


@pytest.mark.parametrize("top", [True, False], ids=["top-folder", "no-top-folder"])
@pytest.mark.parametrize(("case", "root_is_archive"), ROOTS)
def test_zipped_tree_indexes_as_extracted(tmp_path, case, top, root_is_archive):
    write_tree, folder_name = CASES[case]
    dataset = case.split("-")[0]
    extracted, zipped = tmp_path / "extracted", tmp_path / "zipped"
    write_tree(extracted)
    shutil.copytree(extracted, zipped)
    archive = zip_folder(zipped / folder_name, zipped / f"{folder_name}.zip", top=top)
    expected = index_dataset(
        dataset, extracted if dataset == "MAPLES" else extracted / folder_name, {}
    )
    frame = index_dataset(dataset, archive if root_is_archive else zipped, {})
    base = extracted if top else extracted / folder_name
    masks = [
        column for column in frame.columns if column.startswith("mask_") and column != "mask_roi"
    ]
    cells = [cell for column in masks for cell in frame[column] if cell]
    assert cells and all(cell.startswith(f"{archive}{MEMBER_SEPARATOR}") for cell in cells)
    for column in ["image_path", *masks]:
        frame[column] = [_as_extracted(cell, base) for cell in frame[column]]
    frame["image_path"] = frame["image_path"].str.replace(str(zipped), str(extracted))
    assert frame.to_dict("records") == expected.to_dict("records")
    first = cells[0].split("|")[0]
    assert np.array_equal(read_mask(first), read_mask(_as_extracted(first, base)))


def test_unreadable_archive_is_named(tmp_path):
    archive = tmp_path / "A. Segmentation.zip"
    archive.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match="not a readable zip archive") as error:
        index_dataset("IDRID", archive, {})
    assert str(archive) in str(error.value)


def test_mask_in_a_damaged_archive_member_is_named(tmp_path):
    idrid_tree(tmp_path / "ext", IDRID)
    archive = zip_folder(tmp_path / "ext" / "A. Segmentation", tmp_path / "A. Segmentation.zip")
    frame = index_dataset("IDRID", archive, {})
    cell = frame.loc[frame["mask_MA"] != "", "mask_MA"].iloc[0]
    archive.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(BadImageError, match="cannot read the archive") as error:
        read_mask(cell)
    assert cell in str(error.value)


def test_double_colons_separate_only_after_an_existing_zip(tmp_path):
    plain = tmp_path / "scan::2" / "photo.zip::x.png"  # a folder and a file named so
    plain.parent.mkdir()
    plain.write_bytes(b"plain")
    assert split_member_path(plain) is None
    assert read_bytes(plain) == b"plain"
    missing = tmp_path / f"absent.zip{MEMBER_SEPARATOR}photo.png"
    assert split_member_path(missing) is None
    with pytest.raises(FileNotFoundError) as error:
        read_bytes(missing)
    assert str(missing) in str(error.value)
