"""Histogram metrics against scikit-learn on many pixels: same answer, time and memory.

Run: ``python benchmarks/bench_metrics.py [--pixels 50000000] [--bins 1000]``.
The histogram path starts from the raw probabilities (binning included);
scikit-learn gets the already binned scores of the valid pixels. Peak memory is
what each path allocates on top of its inputs, as tracemalloc sees it (NumPy
reports its buffers there); tracing stays on while timing, which costs little
for a few large buffers.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from sklearn.metrics import average_precision_score

from lesionsoup.core.metrics import LesionHistogram, average_precision


def synthetic_pixels(pixels: int, prevalence: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Float32 probabilities, targets with ``prevalence`` positives, and a 95 % valid mask."""
    rng = np.random.default_rng(seed)
    target = rng.random(pixels, dtype=np.float32) < prevalence
    probs = rng.random(pixels, dtype=np.float32)
    probs[target] = probs[target] ** 0.1  # positives lean towards high scores
    valid = rng.random(pixels, dtype=np.float32) < 0.95
    return probs, target, valid


def measured(function: Callable[[], object]) -> tuple[object, float, int]:
    """The result, the wall seconds and the peak bytes allocated by ``function``."""
    tracemalloc.start()
    start = time.perf_counter()
    value = function()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return value, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=50_000_000)
    parser.add_argument("--bins", type=int, default=1000)
    parser.add_argument("--prevalence", type=float, default=0.01)
    args = parser.parse_args()

    probs, target, valid = synthetic_pixels(args.pixels, args.prevalence)
    binned_scores = np.floor(probs[valid].astype(np.float64) * args.bins).astype(np.int32)
    valid_target = target[valid]
    megapixels = args.pixels / 1e6
    print(f"{megapixels:.0f} Mpx, {valid.mean():.1%} valid, {valid_target.mean():.2%} positive")

    def histogram_update() -> LesionHistogram:
        histogram = LesionHistogram(args.bins)
        histogram.update(probs, target, valid)
        return histogram

    _, update_seconds, _ = measured(histogram_update)
    print(f"update alone: {update_seconds:.2f} s, {megapixels / update_seconds:.0f} Mpx/s")
    ours, ours_seconds, ours_peak = measured(lambda: average_precision(histogram_update()))
    theirs, theirs_seconds, theirs_peak = measured(
        lambda: float(average_precision_score(valid_target, binned_scores))
    )
    for name, value, seconds, peak in [
        ("histogram", ours, ours_seconds, ours_peak),
        ("sklearn", theirs, theirs_seconds, theirs_peak),
    ]:
        print(f"AP {name:9} {value:.12f} in {seconds:.2f} s, peak +{peak / 2**20:.1f} MiB")
    print(f"|difference| {abs(ours - theirs):.2e}")
    print(f"sklearn / histogram: time x{theirs_seconds / ours_seconds:.1f}, ", end="")
    print(f"peak memory x{theirs_peak / ours_peak:.0f}")


if __name__ == "__main__":
    main()
