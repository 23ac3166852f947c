"""MESSIDOR photographs with MAPLES-DR labels: official train / test, three layouts.

(a) the export of the ``maples-dr`` Python package::

    <root>/{train,test}/fundus/<name>.<jpg|png>
    <root>/{train,test}/<field>/<name>.png

(b) ``MAPLES-DR.zip``, extracted or read in place, with MESSIDOR's photographs::

    <root>/MAPLES-DR/{train,test}/<Biomarker>/<name>.png    at MESSIDOR's resolution

(c) ``AdditionalData.zip``, extracted or read in place, with MESSIDOR's photographs::

    <root>/AdditionalData/annotations/<Biomarker>/<name>.png    1500 x 1500, in a box
    <root>/AdditionalData/MESSIDOR-ROIs.csv     name,x0,y0,x1,y1,W,H: each box
    <root>/AdditionalData/dataset_record.yaml   train, test, duplicates, biomarkers

In (b) and (c) the photographs are MESSIDOR's, found by a recursive search
(``messidor``) under the root, or under option ``messidor_root``; the root may
also be the ``MAPLES-DR`` or ``AdditionalData`` folder itself, whose parent is
then searched. In (b) an image is indexed when some biomarker folder labels
it. In (c) the record's lists decide: its two duplicates (MESSIDOR images
stored twice under two names) are left out unless option ``duplicates`` is
``include``, which puts them in train, next to their siblings. The masks of
(c) stay files on the box: the manifest's ``mask_roi`` holds the box and
``lesionsoup.data.roi.place_in_frame`` brings them to the photograph.

Field and biomarker folders are matched in any letter case. A folder that is
neither a lesion nor a known other structure is reported by name (a warning),
and an image labelled only in such folders is an error: an export with other
folder names must not pass as a set of lesion-free images.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.archives import ArchiveFolder, Folder, is_archive, open_archive
from lesionsoup.data.datasets.messidor import find_messidor, require_photographs
from lesionsoup.data.datasets.native import (
    UNRECOGNISED_OPTION,
    DatasetError,
    NativeImage,
    Unrecognised,
    existing_root,
    find_child,
    find_path,
    image_files,
    read_mask_folders,
    report_unrecognised,
    require_folder,
    subfolders,
    unknown_entries,
)
from lesionsoup.data.datasets.registry import DatasetAdapter, register
from lesionsoup.data.manifest import format_roi

#: Official splits and their sizes.
OFFICIAL_SPLITS = {"train": 138, "test": 60}
RELEASE_FOLDER = "MAPLES-DR"
ADDITIONAL_FOLDER = "AdditionalData"
ANNOTATIONS = "annotations"
ROI_FILE = "MESSIDOR-ROIs.csv"
RECORD_FILE = "dataset_record.yaml"
ROI_FIELDS = ("name", "x0", "y0", "x1", "y1", "W", "H")
#: The other files of ``AdditionalData``, known and not read.
ADDITIONAL_FILES = (
    ROI_FILE,
    RECORD_FILE,
    "pre_annotations",
    "biomarkers_annotations_infos.xls",
    "diagnosis_infos.xls",
)
IMAGE_FIELD = "fundus"
#: The grades next to the biomarker folders of each split of ``MAPLES-DR.zip``.
DIAGNOSIS_FILE = "diagnosis.csv"
#: Mask folder of each lesion: a field of (a) and a biomarker of (b), up to case.
LESION_FOLDERS = {
    Lesion.EX: "exudates",
    Lesion.HE: "hemorrhages",
    Lesion.MA: "microaneurysms",
    Lesion.CWS: "cottonWoolSpots",
    Lesion.NV: "neovascularization",
}
#: Structures MAPLES-DR labels that are no lesion lesionsoup trains on: known, not read.
OTHER_STRUCTURES = (
    "vessels",
    "opticDisc",
    "opticCup",
    "macula",
    "drusens",
    "brightUncertains",
    "redUncertains",
)
DUPLICATES = ("exclude", "include")


def scan(root: Path, options: Mapping[str, Any]) -> list[NativeImage]:
    root = existing_root(root)
    if options["duplicates"] not in DUPLICATES:
        raise ValueError(
            f"option 'duplicates' must be one of {list(DUPLICATES)}, not {options['duplicates']!r}"
        )
    if any(find_path(root, [split, IMAGE_FIELD]) for split in OFFICIAL_SPLITS):
        if options["messidor_root"] is not None:
            raise ValueError(
                f"{root}: option 'messidor_root' applies to the MAPLES-DR release layout only; "
                "this is a maples-dr package export with its own fundus images"
            )
        images, unrecognised = _scan_export(root)
    else:
        labels, layout, searched = _labels_folder(root)
        if options["messidor_root"] is not None:
            searched = existing_root(options["messidor_root"])
        photographs = find_messidor(searched, exclude=[labels])
        if layout == ADDITIONAL:
            include = options["duplicates"] == "include"
            images, unrecognised = _scan_additional(labels, photographs, searched, include)
        else:
            images, unrecognised = _scan_release(labels, photographs, searched)
    report_unrecognised("MAPLES", unrecognised, images, options[UNRECOGNISED_OPTION])
    return images


#: The two layouts of the released archives, by what their labels folder holds.
RELEASE, ADDITIONAL = "release", "additional"


def _layout(folder: Folder) -> str | None:
    """``ADDITIONAL`` or ``RELEASE`` where ``folder`` holds that archive's labels, else None."""
    if find_child(folder, ANNOTATIONS) is not None and find_child(folder, RECORD_FILE) is not None:
        return ADDITIONAL
    splits = [find_child(folder, split) for split in OFFICIAL_SPLITS]
    return RELEASE if all(split is not None and split.is_dir() for split in splits) else None


def _labels_folder(root: Folder) -> tuple[Folder, str, Path]:
    """The labels folder of ``MAPLES-DR.zip`` or ``AdditionalData.zip``, extracted or read
    in place, its layout, and the folder searched for MESSIDOR.

    Looked for at the root (the labels folder itself, or an archive's top) and in
    the root's ``MAPLES-DR`` / ``AdditionalData`` folder or zip file; inside an
    archive also under its top folder of either name.
    """
    places = [(root, root.parent)]
    for name in (RELEASE_FOLDER, ADDITIONAL_FOLDER):
        for entry in (find_child(root, name), find_child(root, f"{name}.zip")):
            if entry is not None and (entry.is_dir() or is_archive(Path(entry))):
                places.append((entry, root))
    for place, searched in places:
        if isinstance(place, Path) and is_archive(place):
            place = open_archive(place)
        inner = [find_child(place, name) for name in (RELEASE_FOLDER, ADDITIONAL_FOLDER)]
        for folder in [place, *(inner if isinstance(place, ArchiveFolder) else [])]:
            if folder is not None and (layout := _layout(folder)) is not None:
                return folder, layout, searched
    raise DatasetError(
        f"{root}: expected '{{train,test}}/{IMAGE_FIELD}' (maples-dr package export), "
        f"'{RELEASE_FOLDER}/{{train,test}}' (MAPLES-DR.zip) or "
        f"'{ADDITIONAL_FOLDER}/{ANNOTATIONS}' (AdditionalData.zip, extracted or not) under it"
    )


def _read_masks(
    parent: Path, images: Mapping[str, NativeImage], also_known: tuple[str, ...] = ()
) -> list[Unrecognised]:
    """Attach the lesion masks of ``parent``'s biomarker folders; return what was not read."""
    known = (*OTHER_STRUCTURES, *also_known)
    return read_mask_folders(parent, LESION_FOLDERS, images, known=known)


def _scan_export(root: Path) -> tuple[list[NativeImage], list[Unrecognised]]:
    images: list[NativeImage] = []
    unrecognised = unknown_entries(root, OFFICIAL_SPLITS)
    for split in OFFICIAL_SPLITS:
        split_folder = require_folder(root, split)
        in_split = {
            name: NativeImage(name, path, split)
            for name, path in image_files(require_folder(split_folder, IMAGE_FIELD)).items()
        }
        unrecognised += _read_masks(split_folder, in_split, (IMAGE_FIELD,))
        images.extend(in_split.values())
    return images, unrecognised


def _labelled_names(folder: Path) -> list[str]:
    """Every image name some biomarker folder of ``folder`` labels, recognised or not:
    an image labelled only in unrecognised folders must reach ``report_unrecognised``."""
    return sorted({name for sub in subfolders(folder) for name in image_files(sub)})


def _scan_release(
    labels: Path, photographs: dict[str, Path], searched: Path
) -> tuple[list[NativeImage], list[Unrecognised]]:
    images: list[NativeImage] = []
    unrecognised = unknown_entries(labels, OFFICIAL_SPLITS)
    for split in OFFICIAL_SPLITS:
        split_folder = require_folder(labels, split)
        names = _labelled_names(split_folder)
        require_photographs(photographs, names, searched, split_folder)
        in_split = {name: NativeImage(name, photographs[name], split) for name in names}
        unrecognised += _read_masks(split_folder, in_split, (DIAGNOSIS_FILE,))
        images.extend(in_split.values())
    return images, unrecognised


def _scan_additional(
    labels: Path, photographs: dict[str, Path], searched: Path, include_duplicates: bool
) -> tuple[list[NativeImage], list[Unrecognised]]:
    """Layout (c). Left-out duplicates are read with the rest, so that their mask files
    count as recognised, and dropped afterwards (their image path is never used)."""
    splits, duplicates = _read_record(labels / RECORD_FILE)
    kept = {**splits, **(duplicates if include_duplicates else {})}
    boxes = _read_boxes(labels / ROI_FILE)
    missing = sorted(set(kept) - set(boxes))
    if missing:
        raise DatasetError(f"{labels / ROI_FILE}: no region of interest for {missing}")
    require_photographs(photographs, kept, searched, labels)
    images = {
        name: NativeImage(name, photographs.get(name, labels), split, roi=boxes.get(name, ""))
        for name, split in {**duplicates, **splits}.items()
    }
    unrecognised = unknown_entries(labels, (ANNOTATIONS, *ADDITIONAL_FILES))
    unrecognised += _read_masks(require_folder(labels, ANNOTATIONS), images)
    return [images[name] for name in sorted(kept)], unrecognised


def _read_record(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """From ``dataset_record.yaml``: the split of each train and test image, and of each
    duplicate ("train", where its sibling is)."""
    try:
        record = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise DatasetError(f"{path}: cannot read the dataset record ({error})") from error
    if not isinstance(record, dict) or not all(
        isinstance(record.get(split), list) for split in OFFICIAL_SPLITS
    ):
        raise DatasetError(f"{path}: expected the lists {list(OFFICIAL_SPLITS)} in it")
    splits = {str(name): split for split in OFFICIAL_SPLITS for name in record[split]}
    # A mapping duplicate -> sibling, as released; a plain list of names reads the same.
    duplicates = {str(name): "train" for name in record.get("duplicates") or []}
    return splits, duplicates


def _read_boxes(path: Path) -> dict[str, str]:
    """Each image's box from ``MESSIDOR-ROIs.csv``, as a ``mask_roi`` cell."""
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the regions of interest ({error})") from error
    boxes: dict[str, str] = {}
    for number, row in enumerate(rows, start=2):
        try:
            x0, y0, x1, y1 = (int(float(row[key])) for key in ROI_FIELDS[1:5])
        except (KeyError, TypeError, ValueError) as error:
            raise DatasetError(
                f"{path}: line {number} is not {','.join(ROI_FIELDS)} with integer corners"
            ) from error
        boxes[Path(row["name"]).stem] = format_roi(x0, y0, x1, y1)
    return boxes


register(
    DatasetAdapter(
        name="MAPLES",
        scan=scan,
        official_splits=OFFICIAL_SPLITS,
        options={
            "messidor_root": {
                "type": ["string", "null"],
                "default": None,
                "description": "Folder searched (recursively, Base*.zip included) for MESSIDOR's "
                "photographs when they are not under the MAPLES-DR labels' root.",
            },
            "duplicates": {
                "enum": list(DUPLICATES),
                "default": "exclude",
                "description": "AdditionalData.zip's two images that MESSIDOR stores twice: "
                "left out, or included in train.",
            },
        },
    )
)
