"""Throughput of the training data pipeline alone: sample, read, augment, to tensors.

Builds a throw-away cache of synthetic fundus-like images in a temporary folder
and prints patches per second for each DataLoader worker count. Worker start-up
is included in the timing, as a training run pays it too.

    python benchmarks/bench_data_pipeline.py [--size 1536] [--patches 512] [--preset medium]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from lesionsoup.core.lesions import TRAINED, pack
from lesionsoup.data.cache import Cache, CacheEntry, CacheWriter
from lesionsoup.data.geometry import Geometry
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.sampling import PatchDataset, PatchSampler


def synthetic_cache(
    directory: Path, size: int, images: int, seed: int = 0, valid: int = 0
) -> Cache:
    """Noisy images with a disc field of view and a few square lesions of each class.

    The last ``valid`` images form the validation split, the others the training split.
    """
    rng = np.random.default_rng(seed)
    writer = CacheWriter(directory, {"size": size})
    geometry = Geometry.fit(size, size, (0, 0, size, size), size)
    yy, xx = np.mgrid[:size, :size]
    fov = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.45 * size) ** 2
    ids = [f"img{number:03d}" for number in range(images)]
    for number, image_id in enumerate(ids):
        masks = {lesion: np.zeros((size, size), dtype=bool) for lesion in TRAINED}
        for mask in masks.values():
            for y, x in rng.integers(size // 4, 3 * size // 4, size=(5, 2)):
                mask[y : y + 8, x : x + 8] = True
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        split = "valid" if number >= images - valid else "train"
        writer.write(CacheEntry(image_id, split, image, pack(masks, fov), geometry))
    writer.publish(ids)
    return Cache(directory)


def patches_per_second(dataset: PatchDataset, batch_size: int, workers: int) -> float:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    start = time.perf_counter()
    count = sum(len(batch["image"]) for batch in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1536, help="cache image size")
    parser.add_argument("--images", type=int, default=8, help="images in the cache")
    parser.add_argument("--patch", type=int, default=512, help="patch size")
    parser.add_argument("--patches", type=int, default=512, help="patches per measurement")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--preset", default="medium", help="augmentation preset")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        cache = synthetic_cache(Path(folder) / "cache", args.size, args.images)
        sampler = PatchSampler({"SYN": cache}, "train", args.patch, 0.5, "uniform", seed=0)
        dataset = PatchDataset(sampler, build_augmentation(args.preset), length=args.patches)
        print(
            f"cache {args.size}px x {args.images}, patch {args.patch}, batch {args.batch}, "
            f"{args.patches} patches, preset {args.preset}"
        )
        for workers in args.workers:
            rate = patches_per_second(dataset, args.batch, workers)
            print(f"workers={workers}: {rate:.1f} patches/s")


if __name__ == "__main__":
    main()
