"""A registered adapter's scan of a native tree, turned into a manifest with its final splits.

``index_dataset("IDRID", root, options)`` returns the manifest frame
(``lesionsoup.data.manifest``); ``write_manifest`` stores it. Options are the
adapter's own (``DatasetAdapter.options``: ``hemorrhage`` for RETLES,
``messidor_root`` for MAPLES, ...) and ``split`` (``seed``, ``test``,
``valid``, ``train_fraction``; see ``lesionsoup.data.splits``) for every dataset;
the scan also gets ``unrecognised`` (``native.UNRECOGNISED_OPTION``), which is no
dataset's setting but a choice of each run, hence an argument (``lesionsoup index
--unrecognised``).

A subset dataset (a config entry ``IDRID25: {of: IDRID, split: {train_fraction:
0.25}}``, resolved by ``lesionsoup.plan.datasets``) is indexed with ``of`` among
its options: the source's adapter reads the tree and the splits are drawn with
the source's name, so its ``test`` and ``valid`` parts are the source's and its
``train`` part a subset of the source's; its rows name the subset
(``dataset`` column ``IDRID25``), whose cache they fill.
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
from lesionsoup.data.datasets.registry import NAME, SPLIT_OPTION
from lesionsoup.data.manifest import SPLITS, join_mask_paths, manifest_from_rows, mask_column
from lesionsoup.data.splits import SplitOptions, assign_splits

#: The option naming a subset dataset's source (``lesionsoup.plan.datasets.SOURCE``).
SOURCE_OPTION = "of"


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
    source = options.pop(SOURCE_OPTION, None)
    adapter = adapter_for(source or name, options)
    # The splits' seeds use the registered name, or the source's for a subset dataset;
    # the manifest's rows and messages name the dataset itself.
    draw_name = adapter.name
    if source is None:
        name = adapter.name
    elif not NAME.fullmatch(name):
        raise ValueError(f"dataset name {name!r} must match {NAME.pattern}")
    known = [*adapter.option_names, SOURCE_OPTION]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name}; known: {known}")
    if unrecognised not in UNRECOGNISED_CHOICES:
        raise ValueError(f"unrecognised={unrecognised!r} is none of {UNRECOGNISED_CHOICES}")
    split_options = SplitOptions.from_mapping(options.pop(SPLIT_OPTION, None) or {})
    scan_options = {**adapter.option_defaults, **options, UNRECOGNISED_OPTION: unrecognised}
    images = drop_unreadable(name, adapter.scan(Path(root), scan_options), unrecognised)
    if not images:
        raise DatasetError(f"{absolute(root)}: no {name} images found")
    _check_unique_ids(images)
    patients = [adapter.patient(image.image_id) for image in images]
    splits = assign_splits([image.split for image in images], patients, draw_name, split_options)
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
