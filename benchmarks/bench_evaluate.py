"""Evaluation throughput: a tiny U-Net over a synthetic cache, and the histograms alone.

Run: ``python benchmarks/bench_evaluate.py [--images 16] [--size 256] [--device cpu]``.
Megapixels count cache pixels (size x size per image). ``evaluate`` includes
loading the model (timed apart too); "histograms alone" pools precomputed
probabilities of every trained lesion into ``SegmentationHistograms``, from a
NumPy array (binned by NumPy) and from a torch tensor on the CPU and, where
given, on ``--device`` (binned by torch there; only the counts come back).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lesionsoup.core.checkpoint import save_checkpoint
from lesionsoup.core.device_histograms import bin_image
from lesionsoup.core.lesions import TRAINED, pack
from lesionsoup.core.metrics import SegmentationHistograms
from lesionsoup.core.model import ModelSpec, build_model
from lesionsoup.data.cache import Cache, CacheEntry, CacheWriter
from lesionsoup.data.geometry import Geometry
from lesionsoup.evaluation.evaluate import evaluate
from lesionsoup.inference.infer import InferenceSettings
from lesionsoup.inference.predictor import load_predictor


def write_cache(directory: Path, images: int, size: int) -> Path:
    """Noise images inside a disc, with random square lesions, all in split ``test``."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    fov = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.48 * size) ** 2
    writer = CacheWriter(directory, {"size": size, "dataset": "BENCH"})
    ids = [f"img{index}" for index in range(images)]
    for image_id in ids:
        image = (rng.random((size, size, 3)) * 255 * fov[..., None]).astype(np.uint8)
        masks = {}
        for lesion in TRAINED:
            mask = np.zeros((size, size), bool)
            y, x = rng.integers(size // 4, 3 * size // 4, size=2)
            mask[y : y + size // 20, x : x + size // 20] = True
            masks[lesion] = mask & fov
        geometry = Geometry.fit(size, size, (0, 0, size, size), size)
        writer.write(CacheEntry(image_id, "test", image, pack(masks, fov), geometry))
    writer.publish(ids)
    return directory


def tiny_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    spec = ModelSpec(
        encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 8)
    )
    save_checkpoint(path, build_model(spec).state_dict(), {"architecture": spec.as_dict()})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-evaluate", action="store_true", help="time the binning only")
    args = parser.parse_args()
    megapixels = args.images * args.size**2 / 1e6
    print(f"{args.images} images of {args.size} px ({megapixels:.2f} Mpx), device {args.device}")

    with tempfile.TemporaryDirectory() as folder:
        cache = write_cache(Path(folder) / "cache", args.images, args.size)
        model = tiny_checkpoint(Path(folder) / "model.safetensors")

        if not args.skip_evaluate:
            time_evaluate(model, cache, args.size, megapixels, args.device)
        labels = [np.asarray(Cache(cache).labels(f"img{i}")) for i in range(args.images)]
    probs = np.random.default_rng(1).random((len(TRAINED), args.size, args.size), np.float32)
    threads = torch.get_num_threads()
    sources = {"NumPy": probs, f"torch, cpu ({threads} threads)": torch.from_numpy(probs)}
    if args.device != "cpu":
        sources[f"torch, {args.device}"] = torch.from_numpy(probs).to(args.device)
    for name, source in sources.items():
        time_histograms(source, labels[:1], args.device)  # warm-up
        seconds = time_histograms(source, labels, args.device)
        print(
            f"histograms alone ({len(TRAINED)} lesions, {name:22}): {seconds:6.2f} s, "
            f"{megapixels / seconds:6.1f} Mpx/s"
        )


def time_evaluate(model: Path, cache: Path, size: int, megapixels: float, device: str) -> None:
    """Print the model load time and ``evaluate``'s throughput under three inference settings."""
    start = time.perf_counter()
    load_predictor(model, device)
    print(f"load model: {time.perf_counter() - start:.2f} s")
    settings = {
        "whole": InferenceSettings(),
        "whole + 3 flips": InferenceSettings(tta=("horizontal", "vertical", "both")),
        "sliding, tile size/2": InferenceSettings(mode="sliding", tile=size // 2),
    }
    for name, setting in settings.items():
        start = time.perf_counter()
        evaluate(model, cache, settings=setting, device=device)
        seconds = time.perf_counter() - start
        print(f"evaluate, {name:22}: {seconds:6.2f} s, {megapixels / seconds:6.2f} Mpx/s")


def time_histograms(
    probs: np.ndarray | torch.Tensor, labels: list[np.ndarray], device: str
) -> float:
    """Seconds to bin ``probs`` once per label plane (the device is synchronised at the end).

    NumPy arrays go through ``SegmentationHistograms.add_image``; tensors through the
    device path ``bin_image`` even on the CPU, which ``add_image`` would hand to NumPy.
    """
    histograms = SegmentationHistograms(TRAINED)
    start = time.perf_counter()
    for index, plane in enumerate(labels):
        if isinstance(probs, torch.Tensor):
            bin_image(f"img{index}", probs, plane, TRAINED, histograms.bins)
        else:
            histograms.add_image(f"img{index}", probs, plane)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
