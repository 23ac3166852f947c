"""A random 512 x 512 training patch: cache read vs decoding the whole image from PNG.

Writes a small 1536 cache of fundus-like images (textured disc, lesion
labels) and the same images as PNG files (RGB + label plane), then times,
interleaved in one run:

* cache.patch: ``Cache.patch`` (opens the memory-mapped ``.npy`` image and
  labels, copies the patch out);
* read from open maps: the copy alone, from maps opened beforehand (what a
  reader that keeps its maps open would pay);
* png: read both PNG files, ``cv2.imdecode`` them whole, slice the patch.

Run: ``python benchmarks/bench_cache_patch.py [--images 8] [--patches 300]``
(targets: cache >= 50x faster than png, and < 1 ms per patch).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from lesionsoup.core.lesions import FOV_BIT, Lesion
from lesionsoup.data.cache import Cache, CacheEntry, CacheWriter
from lesionsoup.data.geometry import Geometry

SIZE, PATCH = 1536, 512


def fundus_like(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A smooth textured disc in RGB and a label plane with FOV and lesion bits."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    distance = np.hypot(yy - SIZE / 2, xx - SIZE / 2) / (0.48 * SIZE)
    texture = cv2.resize(rng.normal(0, 15, (48, 48, 3)).astype(np.float32), (SIZE, SIZE))
    grain = rng.normal(0, 2, (SIZE, SIZE, 3))
    image = (np.array([180, 90, 40]) + texture + grain) * (1 - 0.5 * distance[..., None] ** 2)
    image[distance >= 1] = 0
    labels = np.where(distance < 1, FOV_BIT, 0).astype(np.uint8)
    for _ in range(60):
        y, x = (int(v) for v in rng.integers(300, SIZE - 300, size=2))
        lesion = (Lesion.EX, Lesion.HE, Lesion.MA)[int(rng.integers(3))]
        cv2.circle(labels, (x, y), int(rng.integers(1, 12)), FOV_BIT | lesion.bit, -1)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--patches", type=int, default=300)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        writer = CacheWriter(folder / "cache", {"size": SIZE})
        geometry = Geometry.fit(SIZE, SIZE, (0, 0, SIZE, SIZE), SIZE)
        ids = [f"img{index}" for index in range(args.images)]
        for image_id in ids:
            image, labels = fundus_like(rng)
            writer.write(CacheEntry(image_id, "train", image, labels, geometry))
            cv2.imwrite(str(folder / f"{image_id}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(folder / f"{image_id}_labels.png"), labels)
        writer.publish(ids)
        cache = Cache(folder / "cache")

        def from_cache(image_id: str, top: int, left: int) -> None:
            cache.patch(image_id, top, left, PATCH)

        def from_png(image_id: str, top: int, left: int) -> None:
            encoded = np.fromfile(folder / f"{image_id}.png", np.uint8)
            encoded_labels = np.fromfile(folder / f"{image_id}_labels.png", np.uint8)
            image = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            labels = cv2.imdecode(encoded_labels, cv2.IMREAD_UNCHANGED)
            window = np.s_[top : top + PATCH, left : left + PATCH]
            np.array(image[window]), np.array(labels[window])

        draws = [
            (ids[int(rng.integers(len(ids)))], *(int(v) for v in rng.integers(0, SIZE - PATCH, 2)))
            for _ in range(args.patches)
        ]
        opened = {image_id: (cache.image(image_id), cache.labels(image_id)) for image_id in ids}

        def from_open_maps(image_id: str, top: int, left: int) -> None:
            image, labels = opened[image_id]
            window = np.s_[top : top + PATCH, left : left + PATCH]
            np.array(image[window]), np.array(labels[window])

        methods = {
            "cache.patch (open + read)": (from_cache, 1),
            "read from open maps": (from_open_maps, 1),
            "png (decode whole + slice)": (from_png, 10),  # slow: every tenth draw
        }
        cpu = dict.fromkeys(methods, 0.0)
        wall = dict.fromkeys(methods, 0.0)
        counts = dict.fromkeys(methods, 0)
        for index, draw in enumerate(draws):
            for name, (function, every) in methods.items():
                if index % every:
                    continue
                start_cpu, start_wall = time.process_time(), time.perf_counter()
                function(*draw)
                cpu[name] += time.process_time() - start_cpu
                wall[name] += time.perf_counter() - start_wall
                counts[name] += 1

    print(f"random {PATCH}x{PATCH} patch (image + labels) from {args.images} {SIZE}px images")
    print(f"  {'':28s} {'cpu ms':>9s} {'wall ms':>9s}")
    for name in methods:
        per_cpu, per_wall = (1000 * totals[name] / counts[name] for totals in (cpu, wall))
        print(f"  {name:28s} {per_cpu:9.3f} {per_wall:9.3f}")
    png, patch = "png (decode whole + slice)", "cache.patch (open + read)"
    for label, totals in (("cpu", cpu), ("wall", wall)):
        ratio = (totals[png] / counts[png]) / (totals[patch] / counts[patch])
        print(f"  ratio png / cache.patch ({label})  {ratio:8.1f}x")
    print("  (targets: >= 50x, cache.patch < 1 ms)")


if __name__ == "__main__":
    main()
