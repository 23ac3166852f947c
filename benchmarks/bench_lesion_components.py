"""Cost of the lesion-wise counts: ``component_counts`` alone, and ``evaluate`` with and without.

Run: ``python benchmarks/bench_lesion_components.py [--size 1024] [--images 4]``.
"Alone" times one image and lesion on masks of lesion-like blobs (sparse, as a fundus
photograph's) and on a dense, noisy prediction (an untrained model's, the worst case for
labelling). "evaluate" runs ``bench_evaluate``'s tiny U-Net over a synthetic cache twice in
one process: as it is, and with the component counting replaced by zeros (the evaluation
before lesion-wise metrics), so the difference is what the counts cost per image.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
from bench_evaluate import tiny_checkpoint, write_cache
from scipy import ndimage

from lesionsoup.core.lesion_components import component_counts, empty_counts
from lesionsoup.evaluation import evaluate as evaluation


def blobs(rng: np.random.Generator, size: int, density: float, grow: int) -> np.ndarray:
    return ndimage.binary_dilation(rng.random((size, size)) < density, iterations=grow)


def time_alone(size: int, repeats: int = 20) -> None:
    rng = np.random.default_rng(0)
    valid = np.ones((size, size), bool)
    cases = {
        "no lesion, nothing predicted": (np.zeros_like(valid), np.zeros_like(valid)),
        "sparse (~100 lesions each)": (blobs(rng, size, 1e-4, 3), blobs(rng, size, 1e-4, 3)),
        "many (~1000 lesions each)": (blobs(rng, size, 1e-3, 2), blobs(rng, size, 1e-3, 2)),
        "dense noisy prediction": (blobs(rng, size, 1e-3, 2), rng.random((size, size)) < 0.5),
    }
    for name, (reference, predicted) in cases.items():
        component_counts(reference, predicted, valid, (100, 1000))
        started = time.perf_counter()
        for _ in range(repeats):
            counts = component_counts(reference, predicted, valid, (100, 1000))
        ms = (time.perf_counter() - started) / repeats * 1e3
        print(f"{name:32s} {ms:7.2f} ms per image-lesion  {counts.sum(axis=0).tolist()}")


def time_evaluate(size: int, images: int) -> None:
    """``evaluate`` without and with the counts, and the time spent inside the counting
    itself (exact where other jobs share the CPUs and make wall-clock differences noise)."""
    with tempfile.TemporaryDirectory() as folder:
        cache = write_cache(Path(folder) / "cache", images, size)
        model = tiny_checkpoint(Path(folder) / "model.safetensors")
        evaluation.evaluate(model, cache, image_ids=["img0"])  # warm up
        counting = evaluation.image_component_counts
        spent = [0.0]

        def timed(*args):
            started = time.perf_counter()
            counts = counting(*args)
            spent[0] += time.perf_counter() - started
            return counts

        def zeros(predicted, *_):
            return [empty_counts() for _ in predicted]

        for name, replacement in (("without counts", zeros), ("with counts", timed)):
            with mock.patch.object(evaluation, "image_component_counts", replacement):
                started = time.perf_counter()
                evaluation.evaluate(model, cache)
                seconds = time.perf_counter() - started
            print(f"evaluate {images} images of {size}px, {name:15s} {seconds:7.3f} s")
        print(
            f"inside the counting: {spent[0] / images * 1e3:.1f} ms per image (4 lesions), "
            f"{spent[0] / seconds * 100:.1f}% of the evaluation with counts"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--images", type=int, default=4)
    args = parser.parse_args()
    time_alone(args.size)
    time_evaluate(args.size, args.images)


if __name__ == "__main__":
    main()
