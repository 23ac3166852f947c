"""Preprocessing one IDRiD-sized photograph vs the floor of decode + resize + write.

Builds a synthetic 4288 x 2848 JPEG (a textured disc) with four TIFF lesion
masks, then times, side by side in one run and on the same files:

* floor: decode the JPEG, one INTER_AREA resize to the cache size, np.save;
* floor + masks: the floor plus decoding the four masks (inputs any
  preprocessing must read);
* preprocess: ``preprocess_image`` + ``CacheWriter.write`` (FOV, crop, resize,
  lesion-preserving labels, lesion locations, record).

Run: ``python benchmarks/bench_preprocess.py [--size 1536] [--repeats 7] [--cv-threads 1]``
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


def interleaved_ms(
    functions: dict[str, Callable[[], object]], repeats: int
) -> dict[str, tuple[float, float]]:
    """Median (CPU, wall) milliseconds of each function, run in turn so that load hits all alike.

    CPU time (this process) is the fairer measure on a shared machine.
    """
    for function in functions.values():
        function()  # warm caches
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            cpu, wall = time.process_time(), time.perf_counter()
            function()
            samples[name].append((time.process_time() - cpu, time.perf_counter() - wall))
    return {
        name: (
            1000 * statistics.median(cpu for cpu, _ in values),
            1000 * statistics.median(wall for _, wall in values),
        )
        for name, values in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1536)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cv-threads", type=int, default=1)
    args = parser.parse_args()
    cv2.setNumThreads(args.cv_threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        row = make_inputs(folder)
        writer = CacheWriter(folder / "cache", {"size": args.size})
        rules = MaskRules()
        scale = args.size / WIDTH
        floor_size = (args.size, round(HEIGHT * scale))

        def floor() -> None:
            image = read_photograph(row["image_path"])
            small = cv2.resize(image, floor_size, interpolation=cv2.INTER_AREA)
            np.save(folder / "floor.npy", small)

        def masks() -> None:
            for lesion in LESIONS:
                read_mask(row[f"mask_{lesion}"])

        def floor_and_masks() -> None:
            floor()
            masks()

        def preprocess() -> None:
            writer.write(preprocess_image(row, args.size, rules))

        results = interleaved_ms(
            {
                "floor": floor,
                "mask decode (4 TIFF)": masks,
                "floor + mask decode": floor_and_masks,
                "preprocess + write": preprocess,
            },
            args.repeats,
        )

    print(f"{WIDTH}x{HEIGHT} JPEG + 4 TIFF masks -> {args.size}, cv2 threads {args.cv_threads}")
    print(f"  {'':24s} {'cpu ms':>8s} {'wall ms':>8s}")
    for name, (cpu, wall) in results.items():
        print(f"  {name:24s} {cpu:8.1f} {wall:8.1f}")
    for reference in ("floor", "floor + mask decode"):
        cpu, wall = (results["preprocess + write"][i] / results[reference][i] for i in (0, 1))
        print(f"  ratio preprocess / {reference:20s} cpu {cpu:.2f}  wall {wall:.2f}")
    print("  (target: preprocess / floor <= 1.3)")


if __name__ == "__main__":
    main()
