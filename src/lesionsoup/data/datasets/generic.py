"""A dataset of your own, described in the config instead of code: the ``generic`` layout.

A hospital's export or a public set without an adapter (E-ophtha, ...) is read
from patterns under its root, given as a config entry whose key is the dataset's
name::

    datasets:
      EOPHTHA:
        layout: generic
        root: /data/e_ophtha
        images: "images/*.jpg"                 # glob; the file stem is the image id
        masks:                                 # one pattern per lesion; {stem} is the image id
          EX: "EX/{stem}_EX.png"               # no file: the image has no such lesion
          MA: "MA/{stem}.png"
        mask_threshold: 128                    # a mask pixel >= this is lesion
        # a lesion's own rule: {pattern: "...", threshold: 1}, or {pattern: "labels/{stem}.png",
        # values: [2]} (a label map); uncertain: {value: 127, as: ignore} marks excluded pixels
        split_file: splits.csv                 # optional: image_id,split rows
        patient: "^(\\d+)_"                    # optional: its first group is the patient
        split: { seed: 0, test: 0.3, valid: 0.15 }

Without ``split_file`` the split is the seeded, patient-aware one of
``lesionsoup.data.splits``; with it, the file's parts are the official split (a
file without ``valid`` rows gets its ``valid`` part carved out of ``train``).

Nothing is registered: ``adapter_for`` builds the adapter from the entry
wherever one is needed (the workflow while planning, ``lesionsoup index`` from
its ``--options``), so the entry alone is the dataset. Mask files that match a lesion's
pattern but no image are an error, never skipped.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets.native import (
    IMAGE_SUFFIXES,
    DatasetError,
    NativeImage,
    attach_mask,
    existing_root,
    listed_file,
)
from lesionsoup.data.datasets.registry import (
    NAME,
    DatasetAdapter,
    get_adapter,
    same_patient_as_image,
)
from lesionsoup.data.splits import PARTS

#: The ``layout`` value that selects this adapter in a config entry.
GENERIC = "generic"
STEM = "{stem}"

#: The adapter's options (JSON schemas with the defaults ``scan`` gets); the config
#: schema's ``generic_dataset`` entry carries the same ones (tests/data/test_datasets_generic.py).
OPTIONS: dict[str, dict[str, Any]] = {
    "layout": {"const": GENERIC, "default": GENERIC, "description": "Selects this adapter."},
    "images": {
        "type": "string",
        "minLength": 1,
        "default": "**/*.jpg",
        "description": "Glob of the photographs under the root; the file stem is the image id.",
    },
    "masks": {
        "type": "object",
        "minProperties": 1,
        "propertyNames": {"enum": [lesion.value for lesion in Lesion]},
        "additionalProperties": {
            "oneOf": [
                {"type": "string", "pattern": "\\{stem\\}"},
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["pattern"],
                    "properties": {
                        "pattern": {"type": "string", "pattern": "\\{stem\\}"},
                        "threshold": {"type": "integer", "minimum": 1, "maximum": 255},
                        "values": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "integer", "minimum": 0, "maximum": 255},
                        },
                    },
                    "not": {"required": ["threshold", "values"]},
                },
            ]
        },
        "default": {},
        "description": "Mask file of each lesion under the root, {stem} standing for the image "
        "id; no file means no lesion. A pattern alone reads with the dataset's mask_threshold; "
        "{pattern, threshold} gives the lesion its own, {pattern, values} counts the pixels of "
        "those values (a label map shared by several lesions).",
    },
    "split_file": {
        "type": ["string", "null"],
        "default": None,
        "description": "CSV of image_id,split rows (train, valid, test) under the root; "
        "without it the split is seeded.",
    },
    "patient": {
        "type": ["string", "null"],
        "default": None,
        "description": "Regular expression whose first group of an image id is its patient "
        "(kept in one part of a seeded split); by default each image is its own patient.",
    },
}


def adapter_for(name: str, settings: Mapping[str, Any]) -> DatasetAdapter:
    """The adapter of dataset ``name`` whose config entry (or index options) is ``settings``."""
    if settings.get("layout") == GENERIC:
        return configured_adapter(name, settings)
    try:
        return get_adapter(name)
    except ValueError as error:
        raise ValueError(f"{error}; a dataset of your own needs `layout: {GENERIC}`") from error


def configured_adapter(name: str, settings: Mapping[str, Any]) -> DatasetAdapter:
    """A ``generic`` adapter named ``name``; a bad name, mask pattern or patient pattern fails."""
    if not NAME.fullmatch(name):
        raise ValueError(f"dataset name {name!r} must match {NAME.pattern}")
    _mask_patterns(settings.get("masks") or {})
    return DatasetAdapter(
        name=name,
        scan=scan,
        options=OPTIONS,
        patient=_patient_rule(name, settings.get("patient")),
        mask_threshold=settings.get("mask_threshold", 128),
        uncertain_value=(settings.get("uncertain") or {}).get("value"),
        uncertain_as=(settings.get("uncertain") or {}).get("as", "ignore"),
        lesion_rules=lesion_rules(settings.get("masks") or {}),
    )


def lesion_rules(masks: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``preprocess.MaskRules.lesion_rules`` of a ``masks`` entry: each lesion given a
    ``threshold`` or ``values`` of its own (a pattern alone uses the dataset's threshold)."""
    return {
        lesion: {key: value for key, value in entry.items() if key != "pattern"}
        for lesion, entry in masks.items()
        if isinstance(entry, Mapping) and len(entry) > 1
    }


def scan(root: Path, options: Mapping[str, Any]) -> list[NativeImage]:
    """The images matching ``options["images"]`` under ``root``, their masks and split."""
    root = existing_root(root)
    images = _images(root, options["images"])
    for lesion, pattern in _mask_patterns(options["masks"]).items():
        _attach_masks(root, images, lesion, pattern)
    if options["split_file"]:
        _apply_split_file(root / options["split_file"], images)
    return list(images.values())


def _images(root: Path, pattern: str) -> dict[str, NativeImage]:
    images: dict[str, NativeImage] = {}
    for path in sorted(root.glob(pattern)):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in images:
            raise DatasetError(f"two images for one id: {images[path.stem].image_path} and {path}")
        images[path.stem] = NativeImage(path.stem, path)
    if not images:
        raise DatasetError(f"{root}: no image matches the pattern '{pattern}'")
    return images


def _mask_patterns(masks: Mapping[str, Any]) -> dict[Lesion, str]:
    """The file pattern of each lesion of ``masks`` (a pattern, or an entry holding one);
    an unknown lesion or a pattern without ``{stem}`` fails."""
    known = [lesion.value for lesion in Lesion]
    unknown = sorted(set(masks) - set(known))
    if unknown:
        raise ValueError(f"masks of unknown lesion(s) {unknown}; known: {known}")
    patterns = {
        Lesion(lesion): entry["pattern"] if isinstance(entry, Mapping) else entry
        for lesion, entry in masks.items()
    }
    for lesion, pattern in patterns.items():
        if STEM not in pattern:
            raise ValueError(f"mask pattern of {lesion} '{pattern}' lacks {STEM} (the image id)")
    return patterns


def _attach_masks(
    root: Path, images: Mapping[str, NativeImage], lesion: Lesion, pattern: str
) -> None:
    """Each image's ``pattern`` file, then an error for files of the pattern left unclaimed."""
    claimed = set()
    for image_id in images:
        mask = root / pattern.replace(STEM, image_id)
        if listed_file(mask):
            attach_mask(images, image_id, lesion, mask)
            claimed.add(mask)
    unclaimed = sorted(set(root.glob(pattern.replace(STEM, "*"))) - claimed)
    if unclaimed:
        shown = ", ".join(str(path) for path in unclaimed[:5])
        raise DatasetError(
            f"{root}: {len(unclaimed)} {lesion} mask file(s) of the pattern '{pattern}' match no "
            f"image: {shown}"
        )


def _apply_split_file(path: Path, images: Mapping[str, NativeImage]) -> None:
    """Set every image's official split from ``path``, which must list each image once."""
    rows = _split_rows(path)
    for row, (image_id, split) in enumerate(rows, start=2):
        if split not in PARTS:
            raise DatasetError(f"{path}, line {row}: split '{split}' is not one of {PARTS}")
        if image_id not in images:
            raise DatasetError(f"{path}, line {row}: image id '{image_id}' has no image")
        images[image_id].split = split
    missing = sorted(image_id for image_id, image in images.items() if image.split is None)
    if missing:
        raise DatasetError(f"{path}: no split for {len(missing)} image(s): {missing[:5]}")


def _split_rows(path: Path) -> list[tuple[str, str]]:
    try:
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            if not {"image_id", "split"} <= set(reader.fieldnames or ()):
                raise DatasetError(f"{path}: needs the columns image_id and split")
            return [(row["image_id"].strip(), row["split"].strip()) for row in reader]
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the split file ({error})") from error


def _patient_rule(name: str, pattern: str | None) -> Callable[[str], str]:
    """The image id -> patient function of a ``patient`` pattern (None: each image alone)."""
    if pattern is None:
        return same_patient_as_image
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"{name}: patient pattern '{pattern}' is not a regex ({error})") from error
    if compiled.groups < 1:
        raise ValueError(f"{name}: patient pattern '{pattern}' needs a group (the patient)")

    def patient(image_id: str) -> str:
        match = compiled.search(image_id)
        if match is None or match.group(1) is None:
            raise DatasetError(f"{name}: image id '{image_id}' does not match '{pattern}'")
        return match.group(1)

    return patient
