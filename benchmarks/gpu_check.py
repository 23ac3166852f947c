"""GPU check: the paper's model, training loop and evaluation on one CUDA GPU, in one command.

    python benchmarks/gpu_check.py [--out gpu_check.json]     # CUDA only, under 8 minutes
    python benchmarks/gpu_check.py --smoke                    # tiny sizes, any device

Measures, on synthetic data, with the paper's UNet-ResNet101 on 512 px patches:

1. the model step (forward, loss, backward, AdamW) in fp32 eager, bf16 +
   channels_last, and bf16 + channels_last + ``torch.compile``: patches/s each
   and the best against fp32 eager (target >= 2.5x);
2. the full training loop (the real ``train_run``: its loader and workers on all
   CPU cores, bf16 + channels_last) against the model step alone with the same
   precision (target >= 90%);
3. evaluation (prediction and histograms of 1536 px images): Mpx/s with the
   histograms binned on the GPU (only the counts cross to the host) against
   the probability maps copied to the host and binned by NumPy, and whether
   both give the same counts;
4. the micro-batch probe (``training.micro_batch: auto``) on a batch of 64 per
   device, per precision (fp32, tf32, bf16): the micro-batch that fits and the
   peak memory per patch it measured;
5. where the machine has several GPUs, the training loop on all of them
   (``devices: N``, DDP with SyncBatchNorm) against one: the scaling
   efficiency, patches/s on N over N x patches/s on one (target >= 0.8);

with the peak GPU memory of each. Prints a table and writes the figures as JSON.
Without CUDA it stops with a message, unless ``--smoke`` asks for a tiny run
of the same code on whatever device there is (a check that the script works,
not a measurement).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from bench_data_pipeline import synthetic_cache
from bench_evaluate import write_cache

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.checkpoint import save_checkpoint
from lesionsoup.core.metrics import SegmentationHistograms
from lesionsoup.core.model import build_model
from lesionsoup.core.precision import resolve
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.evaluation.evaluate import image_probability_tensor
from lesionsoup.inference.infer import DEFAULT_SETTINGS
from lesionsoup.inference.predictor import load_predictor
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.losses import LossWeights, segmentation_loss
from lesionsoup.training.micro_batch import probe
from lesionsoup.training.run import RunOptions, train_run
from lesionsoup.training.sampling import PatchDataset, PatchSampler

VARIANTS = ("fp32 eager", "bf16 + channels_last", "bf16 + channels_last + compile")
TARGETS = {"best_vs_fp32": 2.5, "loop_vs_step": 0.9, "scaling": 0.8}
#: The per-device batch the micro-batch probe starts from, and the precisions it is run in.
PROBE_BATCH, PROBE_PRECISIONS = 64, ("fp32", "tf32", "bf16")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What to run: the model, the patches and how many steps and images."""

    encoder: str = "resnet101"
    depth: int = 5
    decoder: tuple[int, ...] = (256, 128, 64, 32, 16)
    patch: int = 512
    batch: int = 8
    steps: int = 20
    warmup: int = 3
    loop_steps: int = 60
    train_size: int = 1024
    train_images: int = 12
    eval_size: int = 1536
    eval_images: int = 8

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(
            encoder=self.encoder,
            encoder_weights=None,
            encoder_depth=self.depth,
            decoder_channels=self.decoder,
        )


SMOKE = Sizes("resnet18", 3, (32, 16, 8), 64, 2, 2, 1, 4, 128, 4, 128, 2)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None


def _autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def step_rate(
    sizes: Sizes, batch: dict[str, torch.Tensor], device: torch.device, variant: str
) -> dict[str, Any]:
    """Patches/s and peak memory of forward + loss + backward + AdamW on one fixed batch."""
    _reset_peak(device)
    spec, bf16 = sizes.spec, variant != "fp32 eager"
    model = build_model(spec).to(device)
    images = batch["image"].to(device)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if variant.endswith("compile") else model
    target, valid = batch["target"].to(device), batch["valid"].to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    started = time.perf_counter()
    for step in range(sizes.warmup + sizes.steps):
        if step == sizes.warmup:
            _sync(device)
            warm, start = time.perf_counter() - started, time.perf_counter()
        with _autocast(device, bf16):
            logits = forward(images)
        loss = segmentation_loss(
            logits, target, valid, LossWeights(), spec.head, spec.lesion_classes
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    seconds = time.perf_counter() - start
    return {
        "patches_per_s": sizes.steps * len(images) / seconds,
        "warmup_s": warm,
        "peak_gpu_mib": _peak_mib(device),
    }


def loop_rate(
    folder: Path, cache: Cache, sizes: Sizes, device: torch.device, devices: int = 1
) -> dict[str, Any]:
    """Median patches/s (every device's) of the real training loop (bf16 + channels_last on
    CUDA) on ``devices`` devices, each with the per-device batch."""
    _reset_peak(device)
    settings = TrainSettings(
        steps=sizes.loop_steps,
        batch_size=sizes.batch,
        devices=devices,
        patch_size=sizes.patch,
        validate_every=sizes.loop_steps,
        state_every=sizes.loop_steps,
    )
    threads = os.cpu_count() or 1
    started = time.perf_counter()
    run = folder / f"run-{devices}"
    train_run(
        run,
        {"SYN": cache},
        sizes.spec,
        settings,
        RunOptions(
            threads=threads, device=device.type, micro_batch=sizes.batch, progress_bar=False
        ),
    )
    rates = pd.read_csv(run / "log.csv")["patches_per_s"]
    steady = rates.iloc[min(sizes.warmup, len(rates) - 1) :]
    return {
        "patches_per_s": float(statistics.median(steady)),
        "threads": threads,
        "wall_s": time.perf_counter() - started,
        "peak_gpu_mib": _peak_mib(device),
    }


def _evaluation_pass(predictor, cache: Cache, on_host: bool | None) -> tuple[float, Any]:
    """Seconds of prediction (+ binning on the device or on the host; None: no binning)."""
    histograms = SegmentationHistograms(predictor.lesions)
    device = predictor.device
    _sync(device)
    start = time.perf_counter()
    for image_id in cache.ids_in("test"):
        labels = np.asarray(cache.labels(image_id))
        image = np.asarray(cache.image(image_id))
        probs = image_probability_tensor(predictor, image, labels, DEFAULT_SETTINGS)
        if on_host is not None:
            probs = probs.float().cpu().numpy() if on_host else probs
            histograms.add_image(image_id, probs, labels)
    _sync(device)
    return time.perf_counter() - start, histograms


def evaluation_rates(folder: Path, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Mpx/s of prediction alone, with device histograms and with host (NumPy) histograms."""
    model = folder / "model.safetensors"
    torch.manual_seed(0)
    save_checkpoint(
        model, build_model(sizes.spec).state_dict(), {"architecture": sizes.spec.as_dict()}
    )
    cache = Cache(write_cache(folder / "eval", sizes.eval_images, sizes.eval_size))
    predictor = load_predictor(model, device)
    megapixels = sizes.eval_images * sizes.eval_size**2 / 1e6
    _evaluation_pass(predictor, cache, None)  # warm-up (cuDNN, allocator)
    results: dict[str, Any] = {"megapixels": megapixels}
    counts = {}
    for name, on_host in (
        ("predict only", None),
        ("device histograms", False),
        ("CPU histograms", True),
    ):
        _reset_peak(device)
        seconds, counts[name] = _evaluation_pass(predictor, cache, on_host)
        results[name] = {"mpx_per_s": megapixels / seconds, "peak_gpu_mib": _peak_mib(device)}
    results["same_counts"] = counts["device histograms"] == counts["CPU histograms"]
    return results


def probed_micro_batches(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Per precision: the micro-batch ``auto`` settles on for a batch of ``PROBE_BATCH`` per
    device, and the peak memory per patch of its trial step."""
    settings = TrainSettings(batch_size=PROBE_BATCH, patch_size=sizes.patch)
    results = {}
    for name in PROBE_PRECISIONS:
        precision = resolve(name, device)
        torch.set_float32_matmul_precision(precision.matmul_precision)
        _reset_peak(device)
        micro = probe(sizes.spec, settings, device, precision)
        peak = _peak_mib(device)
        results[name] = {
            "micro_batch": micro,
            "peak_gpu_mib": peak,
            "gib_per_patch": None if peak is None else peak / 1024 / micro,
        }
    torch.set_float32_matmul_precision("highest")
    return results


def scaling(folder: Path, cache: Cache, sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """The training loop on every GPU (two CPU processes in a smoke run) against one."""
    count = torch.cuda.device_count() if device.type == "cuda" else 2
    if count < 2:
        return {"devices": count, "skipped": "one GPU: no multi-GPU case on this machine"}
    several = loop_rate(folder, cache, sizes, device, devices=count)
    one = loop_rate(folder, cache, sizes, device, devices=1)
    return {
        "devices": count,
        "patches_per_s": several["patches_per_s"],
        "one_device_patches_per_s": one["patches_per_s"],
        "efficiency": several["patches_per_s"] / (count * one["patches_per_s"]),
    }


def run_checks(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    """Every measurement, as the JSON-able figures."""
    figures: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        figures["gpu"] = torch.cuda.get_device_name(device)
    figures["sizes"] = dataclasses.asdict(sizes)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        cache = synthetic_cache(folder / "train", sizes.train_size, sizes.train_images, valid=2)
        sampler = PatchSampler({"SYN": cache}, "train", sizes.patch, 0.5, "proportional", seed=0)
        dataset = PatchDataset(sampler, build_augmentation("medium"), sizes.batch)
        batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=sizes.batch)))
        steps = {variant: step_rate(sizes, batch, device, variant) for variant in VARIANTS}
        figures["model_step"] = steps
        fp32 = steps["fp32 eager"]["patches_per_s"]
        figures["best_vs_fp32"] = max(s["patches_per_s"] for s in steps.values()) / fp32
        loop = loop_rate(folder, cache, sizes, device)
        loop["vs_step"] = loop["patches_per_s"] / steps["bf16 + channels_last"]["patches_per_s"]
        figures["training_loop"] = loop
        figures["evaluation"] = evaluation_rates(folder, sizes, device)
        figures["micro_batch_probe"] = probed_micro_batches(sizes, device)
        figures["scaling"] = scaling(folder, cache, sizes, device)
    figures["targets"] = {
        "best_vs_fp32 >= 2.5": figures["best_vs_fp32"] >= TARGETS["best_vs_fp32"],
        "loop_vs_step >= 0.9": loop["vs_step"] >= TARGETS["loop_vs_step"],
        "same evaluation counts": figures["evaluation"]["same_counts"],
    }
    if "efficiency" in figures["scaling"]:
        efficiency = figures["scaling"]["efficiency"]
        figures["targets"]["scaling >= 0.8"] = efficiency >= TARGETS["scaling"]
    return figures


def _memory(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MiB"


def print_table(figures: dict[str, Any]) -> None:
    sizes = figures["sizes"]
    print(f"device {figures['device']} {figures.get('gpu', '')}, torch {figures['torch']}")
    print(f"UNet-{sizes['encoder']}, {sizes['patch']} px patches, batch {sizes['batch']}")
    print(f"{'measurement':48} {'rate':>16} {'peak GPU memory':>16}")
    for variant, step in figures["model_step"].items():
        rate = f"{step['patches_per_s']:.1f} patch/s"
        print(f"{'model step, ' + variant:48} {rate:>16} {_memory(step['peak_gpu_mib']):>16}")
    print(f"{'  best / fp32 eager (target >= 2.5)':48} {figures['best_vs_fp32']:>15.2f}x")
    loop = figures["training_loop"]
    rate = f"{loop['patches_per_s']:.1f} patch/s"
    name = f"training loop, {loop['threads']} CPU threads"
    print(f"{name:48} {rate:>16} {_memory(loop['peak_gpu_mib']):>16}")
    print(f"{'  loop / bf16 step alone (target >= 0.90)':48} {loop['vs_step']:>16.2f}")
    evaluation = figures["evaluation"]
    for name in ("predict only", "device histograms", "CPU histograms"):
        entry = evaluation[name]
        rate = f"{entry['mpx_per_s']:.2f} Mpx/s"
        print(f"{'evaluation, ' + name:48} {rate:>16} {_memory(entry['peak_gpu_mib']):>16}")
    print(f"{'  same counts on both paths':48} {evaluation['same_counts']!s:>16}")
    for name, entry in figures["micro_batch_probe"].items():
        label = f"micro-batch probe, {name}, batch {PROBE_BATCH}"
        per_patch = entry["gib_per_patch"]
        rate = f"{entry['micro_batch']} patches" + (
            "" if per_patch is None else f", {per_patch:.2f} GiB each"
        )
        print(f"{label:48} {rate:>16} {_memory(entry['peak_gpu_mib']):>16}")
    scaled = figures["scaling"]
    if "efficiency" in scaled:
        rate = f"{scaled['patches_per_s']:.1f} patch/s"
        print(f"{'training loop on ' + str(scaled['devices']) + ' devices':48} {rate:>16}")
        print(f"{'  efficiency vs one device (target >= 0.80)':48} {scaled['efficiency']:>16.2f}")
    else:
        print(f"{'training loop on several GPUs':48} {scaled['skipped']}")
    failed = [name for name, ok in figures["targets"].items() if not ok]
    if figures["smoke"]:
        print("smoke run (tiny sizes): the script works; its figures measure nothing")
    else:
        print("all targets met" if not failed else f"targets missed: {', '.join(failed)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on any device")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.smoke:
        sys.exit(
            f"gpu_check: CUDA is not available (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda or 'none'}); run it on a machine with an NVIDIA GPU, or pass "
            "--smoke for a tiny run of the same code on this machine"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    figures = run_checks(SMOKE if args.smoke else Sizes(), device)
    figures["smoke"], figures["seconds"] = args.smoke, time.perf_counter() - started
    print_table(figures)
    atomic_write_bytes(args.out, (json.dumps(figures, indent=2) + "\n").encode())
    print(f"{figures['seconds']:.0f} s; figures in {args.out}")


if __name__ == "__main__":
    main()
