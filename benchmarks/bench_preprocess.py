"""Preprocessing one IDRiD-sized photograph vs the floor of the same decode, crop, resize and write.

Builds a synthetic 4288 x 2848 JPEG (a textured disc) with four TIFF lesion
masks, then times, side by side in one run and on the same files:

* photo floor: decode the JPEG, crop it to the field of view's box, one
  INTER_AREA resize to the cached size, ``np.save`` (the floor the issue
  first quoted; masks excluded, so no preprocessing can reach 1.3x of it);
* floor: the photo floor plus what any preprocessing of these inputs must
  also do: decode the four masks with the same reader, crop them to the same
  box, one INTER_AREA resize of the four stacked, and save one label plane;
  the same decoders, crop, interpolation and sizes as ``preprocess_image``;
* preprocess: ``preprocess_image`` + ``CacheWriter.write`` (everything above
  plus field-of-view detection, binarisation, lesion preservation, label
  packing, padding, lesion locations and the record).

Rounds run the three in turn, so load from other processes hits all alike;
the ratio is taken per round and its median and range are printed.

Run: ``python benchmarks/bench_preprocess.py [--size 1536] [--repeats 9] [--cv-threads 1]``
(``--cv-threads 1`` is what each ``build_cache`` worker uses).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from lesionsoup.data.cache import CacheWriter
from lesionsoup.data.preprocess import MaskRules, preprocess_image, read_mask, read_photograph

HEIGHT, WIDTH = 2848, 4288
LESIONS = ("EX", "HE", "MA", "CWS")


def make_inputs(folder: Path, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    distance = np.hypot(yy - HEIGHT / 2, xx - WIDTH / 2 - 60) / 1450
    texture = cv2.resize(rng.normal(0, 15, (90, 135, 3)).astype(np.float32), (WIDTH, HEIGHT))
    image = (np.array([40, 90, 180], np.float32) + texture) * (1 - 0.5 * distance[..., None] ** 2)
    image[distance >= 1] = 0
    image_path = folder / "photo.jpg"
    cv2.imwrite(
        str(image_path), np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    row = {"image_id": "photo", "split": "train", "image_path": str(image_path)}
    row |= {"width": WIDTH, "height": HEIGHT}
    for index, lesion in enumerate(LESIONS):
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        for _ in range((200, 40, 150, 10)[index]):
            y, x = rng.integers(600, HEIGHT - 600), rng.integers(900, WIDTH - 900)
            radius = int(rng.integers((2, 10, 1, 30)[index], (25, 60, 6, 90)[index]))
            cv2.circle(mask, (int(x), int(y)), radius, 255, -1)
        path = folder / f"photo_{lesion}.tif"
        cv2.imwrite(str(path), mask)
        row[f"mask_{lesion}"] = str(path)
    return row


def interleaved(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """CPU seconds (this process; fairer on a shared machine) of each function per round."""
    for function in functions.values():
        function()  # warm caches
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            cpu = time.process_time()
            function()
            samples[name].append(time.process_time() - cpu)
    return samples


def floors(row: dict, size: int, folder: Path) -> dict[str, Callable[[], None]]:
    """The photo floor and the floor (module docstring), on ``preprocess_image``'s geometry."""
    geometry = preprocess_image(row, size, MaskRules()).geometry
    y0, x0, y1, x1 = geometry.crop_y0, geometry.crop_x0, geometry.crop_y1, geometry.crop_x1
    out = (geometry.resized_w, geometry.resized_h)

    def photo() -> None:
        image = read_photograph(row["image_path"])[y0:y1, x0:x1]
        np.save(folder / "floor_image.npy", cv2.resize(image, out, interpolation=cv2.INTER_AREA))

    def floor() -> None:
        photo()
        stacked = np.empty((y1 - y0, x1 - x0, len(LESIONS)), np.uint8)  # fastest stacking tried
        for channel, lesion in enumerate(LESIONS):
            stacked[..., channel] = read_mask(row[f"mask_{lesion}"])[y0:y1, x0:x1]
        small = cv2.resize(stacked, out, interpolation=cv2.INTER_AREA)
        np.save(folder / "floor_labels.npy", small[..., 0])

    return {"photo floor": photo, "floor": floor}


def _report(samples: dict[str, list[float]]) -> None:
    print(f"  {'':24s} {'median ms':>10s} {'range ms':>16s}")
    for name, values in samples.items():
        low, high = 1000 * min(values), 1000 * max(values)
        print(f"  {name:24s} {1000 * statistics.median(values):10.1f} {low:7.1f} - {high:6.1f}")
    for reference in ("photo floor", "floor"):
        ratios = [
            p / f for p, f in zip(samples["preprocess + write"], samples[reference], strict=True)
        ]
        print(
            f"  ratio preprocess / {reference:12s} median {statistics.median(ratios):.2f}"
            f"  range {min(ratios):.2f} - {max(ratios):.2f}  ({len(ratios)} rounds)"
        )
    print("  (target: preprocess / floor <= 1.3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1536)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--cv-threads", type=int, default=1)
    args = parser.parse_args()
    cv2.setNumThreads(args.cv_threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        row = make_inputs(folder)
        writer = CacheWriter(folder / "cache", {"size": args.size})
        rules = MaskRules()

        def preprocess() -> None:
            writer.write(preprocess_image(row, args.size, rules))

        samples = interleaved(
            {**floors(row, args.size, folder), "preprocess + write": preprocess}, args.repeats
        )

    print(f"{WIDTH}x{HEIGHT} JPEG + 4 TIFF masks -> {args.size}, cv2 threads {args.cv_threads}")
    _report(samples)


if __name__ == "__main__":
    main()
