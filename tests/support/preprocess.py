"""Toy photographs and masks as manifest rows (tests/data/test_preprocess.py), shared with the
evaluation tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

DISC_COLOUR = (40, 100, 190)  # BGR: a reddish fundus


def write_case(
    folder: Path,
    image_id: str,
    height: int = 300,
    width: int = 400,
    masks: dict[str, np.ndarray | list[np.ndarray]] | None = None,
    suffix: str = ".png",
) -> dict:
    """A disc photograph (disc of radius 0.45 * height, centred) and its masks as a manifest row."""
    image = np.zeros((height, width, 3), np.uint8)
    cv2.circle(image, (width // 2, height // 2), int(0.45 * height), DISC_COLOUR, -1)
    image_path = folder / f"{image_id}{suffix}"
    cv2.imwrite(str(image_path), image)
    row = {
        "image_id": image_id,
        "dataset": "TEST",
        "split": "train",
        "patient": image_id,
        "image_path": str(image_path),
        "width": width,
        "height": height,
    }
    for name in ("EX", "HE", "MA", "CWS", "IRMA", "NV"):
        planes = (masks or {}).get(name)
        if planes is None:
            row[f"mask_{name}"] = np.nan
            continue
        paths = []
        for index, plane in enumerate(planes if isinstance(planes, list) else [planes]):
            path = folder / f"{image_id}_{name}{index}.tif"
            cv2.imwrite(str(path), plane)
            paths.append(str(path))
        row[f"mask_{name}"] = "|".join(paths)
    return row


def blank(height: int = 300, width: int = 400) -> np.ndarray:
    return np.zeros((height, width), np.uint8)


def manifest_of(folder: Path, count: int) -> pd.DataFrame:
    rows = []
    for index in range(count):
        mask = blank()
        cv2.circle(mask, (150 + 10 * index, 150), 5, 255, -1)
        rows.append(write_case(folder, f"img{index}", masks={"MA": mask}))
    return pd.DataFrame(rows)
