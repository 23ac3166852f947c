"""The floor of preprocessing, as a process of its own (``bench_preprocess.py`` runs it).

Imports only cv2 and numpy (and the standard library), one OpenCV thread: for each
image of a plan (JSON, written by the benchmark) decode the photograph and its
masks, crop them to the field of view's box, resize once (INTER_AREA; the four
masks stacked into one call) and ``np.save`` the image and one label plane.

Run: ``python benchmarks/preprocess_floor.py PLAN.json OUT_DIR``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np


def floor_one(image: dict, out: Path) -> None:
    """Decode, crop, resize and save one planned image (keys: id, image, masks, crop, size)."""
    y0, x0, y1, x1 = image["crop"]
    size = tuple(image["size"])
    photo = cv2.imread(image["image"], cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    small = cv2.resize(photo[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
    np.save(out / f"{image['id']}_image.npy", small)
    stacked = np.empty((y1 - y0, x1 - x0, len(image["masks"])), np.uint8)
    for channel, path in enumerate(image["masks"]):
        stacked[..., channel] = cv2.imread(path, cv2.IMREAD_UNCHANGED)[y0:y1, x0:x1]
    labels = cv2.resize(stacked, size, interpolation=cv2.INTER_AREA)
    np.save(out / f"{image['id']}_labels.npy", labels[..., 0])


def main() -> None:
    cv2.setNumThreads(1)
    plan, out = json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for image in plan:
        floor_one(image, out)


if __name__ == "__main__":
    main()
