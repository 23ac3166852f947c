"""A registered adapter's scan of a native tree, turned into a manifest with its final splits.

``index_dataset("IDRID", root, options)`` returns the manifest frame
(``lesionsoup.data.manifest``); ``write_manifest`` stores it. Options are the
adapter's own (``DatasetAdapter.options``: ``hemorrhage`` for RETLES,
``messidor_root`` for MAPLES, ...) and ``split`` (``seed``, ``test``,
``valid``; see ``lesionsoup.data.splits``) for every dataset; the scan also gets
``unrecognised`` (``native.UNRECOGNISED_OPTION``), which is no dataset's setting
but a choice of each run, hence an argument (``lesionsoup index --unrecognised``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from lesionsoup.core.lesions import ALL
from lesionsoup.data.datasets.generic import adapter_for
from lesionsoup.data.datasets.native import (
    UNRECOGNISED_CHOICES,
    UNRECOGNISED_OPTION,
    DatasetError,
    NativeImage,
    absolute,
    drop_unreadable,
    image_size,
)
from lesionsoup.data.datasets.registry import SPLIT_OPTION
from lesionsoup.data.manifest import SPLITS, join_mask_paths, manifest_from_rows, mask_column
from lesionsoup.data.splits import SplitOptions, assign_splits


def index_dataset(
    name: str,
    root: Path | str,
    options: Mapping[str, Any] | None = None,
    unrecognised: str = "warn",
) -> pd.DataFrame:
    """The manifest of dataset ``name`` stored under ``root``: registered (any letter case),
    or ``generic`` when ``options`` say so (``lesionsoup.data.datasets.generic``).

    ``unrecognised`` (``warn`` or ``error``) is what the adapter does with folders and
    files it does not read (``native.report_unrecognised``), and with listed files that
    cannot be opened (``native.drop_unreadable``: under ``warn`` their images are left out).
    """
    options = dict(options or {})
    adapter = adapter_for(name, options)
    name = adapter.name  # the manifest, its splits' seeds and messages use the registered name
    unknown = sorted(set(options) - set(adapter.option_names))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name}; known: {adapter.option_names}")
    if unrecognised not in UNRECOGNISED_CHOICES:
        raise ValueError(f"unrecognised={unrecognised!r} is none of {UNRECOGNISED_CHOICES}")
    split_options = SplitOptions.from_mapping(options.pop(SPLIT_OPTION, None) or {})
    scan_options = {**adapter.option_defaults, **options, UNRECOGNISED_OPTION: unrecognised}
    images = drop_unreadable(name, adapter.scan(Path(root), scan_options), unrecognised)
    if not images:
        raise DatasetError(f"{absolute(root)}: no {name} images found")
    _check_unique_ids(images)
    patients = [adapter.patient(image.image_id) for image in images]
    splits = assign_splits([image.split for image in images], patients, name, split_options)
    rows = [
        _row(name, image, split, patient)
        for image, split, patient in zip(images, splits, patients, strict=True)
    ]
    rows.sort(key=lambda row: (SPLITS.index(str(row["split"])), str(row["image_id"])))
    return manifest_from_rows(rows, source=f"{name} at {absolute(root)}")


def _check_unique_ids(images: list[NativeImage]) -> None:
    seen: dict[str, NativeImage] = {}
    for image in images:
        if image.image_id in seen:
            raise DatasetError(
                f"image id '{image.image_id}' repeats: {seen[image.image_id].image_path} "
                f"and {image.image_path}"
            )
        seen[image.image_id] = image


def _row(dataset: str, image: NativeImage, split: str, patient: str) -> dict[str, object]:
    width, height = image_size(image.image_path)
    return {
        "image_id": image.image_id,
        "dataset": dataset,
        "split": split,
        "patient": patient,
        "image_path": str(absolute(image.image_path)),
        **{
            mask_column(lesion): join_mask_paths(absolute(p) for p in image.masks.get(lesion, []))
            for lesion in ALL
        },
        "mask_roi": image.roi,
        "width": width,
        "height": height,
    }
