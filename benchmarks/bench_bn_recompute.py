"""Wall time of one BatchNorm recompute (patch loading and forward pass) on the demo model.

Compares the former default (64 fixed patches, no augmentation) with the
current one (an epoch-equivalent of augmented training patches, drawn with the
training sampler and augmentation), and 64 augmented patches to separate the
cost of the count from the cost of augmenting. The model and training
settings are the demo's (``config.yaml``); the caches are those given, e.g.
the demo combination's after ``snakemake results/cache/{DDR,IDRID,MAPLES}``:

    python benchmarks/bench_bn_recompute.py --cache results/cache/DDR \\
        --cache results/cache/IDRID --cache results/cache/MAPLES [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path
from time import perf_counter

import torch
import yaml

from lesionsoup.core.device import pick_device
from lesionsoup.core.merge_rules import EPOCH, BatchNormSample
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.merging.batchnorm import batchnorm_recompute, recompute_bn

CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"


def demo_model_and_settings() -> tuple[ModelSpec, TrainSettings]:
    config = yaml.safe_load(CONFIG.read_text())
    spec = ModelSpec.from_dict(dict(config["model"]))
    return spec, TrainSettings.from_dict(dict(config["training"]["defaults"]))


def time_recompute(
    caches: dict[str, Cache],
    spec: ModelSpec,
    settings: TrainSettings,
    sample: BatchNormSample,
    device: torch.device,
    workers: int,
) -> tuple[int, float]:
    """Patches and seconds of one recompute: the loader built, every patch read and forwarded."""
    model = build_model(spec).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = perf_counter()
    recompute = batchnorm_recompute(caches, spec, settings, sample, device, workers)
    recompute_bn(model, recompute.batches, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return int(recompute.patches or 0), perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, action="append", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    caches = {path.name: Cache(path) for path in args.cache}
    spec, settings = demo_model_and_settings()
    plain = dataclasses.replace(settings, augmentation="none")
    cases = {
        "former: 64 patches, no augmentation": (plain, BatchNormSample(patches=64)),
        "64 augmented patches": (settings, BatchNormSample(patches=64)),
        "default: epoch-equivalent, augmented": (settings, BatchNormSample(patches=EPOCH)),
    }
    device = pick_device(args.device)
    rows = {}
    for name, (case_settings, sample) in cases.items():
        runs = [
            time_recompute(caches, spec, case_settings, sample, device, args.workers)
            for _ in range(args.repeats)
        ]
        seconds = [s for _, s in runs]
        rows[name] = {"patches": runs[0][0], "median_s": statistics.median(seconds)}
        rows[name]["ms_per_patch"] = 1000 * rows[name]["median_s"] / rows[name]["patches"]
        print(f"{name:40s} {runs[0][0]:6d} patches  {rows[name]['median_s']:8.3f} s", flush=True)
    training = {name: len(cache.ids_in("train")) for name, cache in caches.items()}
    print(json.dumps({"device": str(device), "training_images": training, "cases": rows}))


if __name__ == "__main__":
    main()
