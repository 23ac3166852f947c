"""Training throughput: data pipeline alone, model step alone, and the full loop.

The loop should run at >= 90% of the slower of its two parts (data loading in
worker processes overlapping the model step). Prints patches/s of each and the
ratio, measured side by side in one run on a throw-away synthetic cache.

    python benchmarks/bench_training.py [--size 256 --patch 128 --batch 8 --workers 1]

On a GPU, compare `--device cuda` with `--precision` auto (bf16 on GPUs with
native bf16, fp16 with loss scaling on older ones), bf16, fp16 and fp32;
channels_last is what the loop uses on a GPU. `--log-every` sets how often
the loop reads the loss back to the host (1: every step, as before).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from bench_data_pipeline import patches_per_second, synthetic_cache

from lesionsoup.core.device import pick_device
from lesionsoup.core.model import build_model
from lesionsoup.core.precision import Precision, resolve
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.losses import LossWeights, segmentation_loss
from lesionsoup.training.progress import LOG_EVERY
from lesionsoup.training.run import RunOptions, train_run
from lesionsoup.training.sampling import PatchDataset, PatchSampler


def model_step_rate(
    spec: ModelSpec,
    batch: dict[str, torch.Tensor],
    steps: int,
    device: torch.device,
    precision: Precision,
) -> float:
    """Patches/s of forward + loss + backward + AdamW step on one fixed batch."""
    model = build_model(spec).to(device)
    images = batch["image"].to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    target, valid = batch["target"].to(device), batch["valid"].to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    scaler = precision.scaler()
    for step in range(steps + 2):
        if step == 2:  # two warm-up steps, then time
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with precision.autocast():
            logits = model(images)
        loss = segmentation_loss(
            logits, target, valid, LossWeights(), "sigmoid", spec.lesion_classes
        )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="cache image size")
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--decoder", default="64,32,16")
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--threads", type=int, default=2, help="cores for the training job")
    parser.add_argument("--workers", type=int, default=1, help="data-loading processes")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto, bf16, fp16 or fp32")
    parser.add_argument("--log-every", type=int, default=LOG_EVERY, help="steps between read-backs")
    args = parser.parse_args()

    device = pick_device(args.device)
    precision = resolve(args.precision, device)
    spec = ModelSpec(
        encoder=args.encoder,
        encoder_weights=None,
        encoder_depth=args.depth,
        decoder_channels=tuple(int(c) for c in args.decoder.split(",")),
    )
    torch.set_num_threads(max(1, args.threads - args.workers))
    with tempfile.TemporaryDirectory() as folder:
        cache = synthetic_cache(Path(folder) / "cache", args.size, images=10, valid=2)
        sampler = PatchSampler({"SYN": cache}, "train", args.patch, 0.5, "proportional", seed=0)
        dataset = PatchDataset(sampler, build_augmentation(args.preset), args.steps * args.batch)
        data_rate = patches_per_second(dataset, args.batch, args.workers)
        batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=args.batch)))
        model_rate = model_step_rate(spec, batch, args.steps, device, precision)
        settings = TrainSettings(
            steps=args.steps,
            batch_size=args.batch,
            patch_size=args.patch,
            augmentation=args.preset,
            validate_every=args.steps,
            state_every=args.steps,
        )
        run = Path(folder) / "run"
        train_run(
            run,
            {"SYN": cache},
            spec,
            settings,
            RunOptions(
                threads=args.threads,
                workers=args.workers,
                device=args.device,
                precision=args.precision,
                progress_bar=False,
                log_every=args.log_every,
            ),
        )
        rates = pd.read_csv(run / "log.csv")["patches_per_s"].iloc[3:]
        loop_rate = statistics.median(rates)
    slower = min(data_rate, model_rate)
    print(
        f"device {device}, {precision.name}, {args.threads} threads, {args.workers} loader "
        f"workers, "
        f"{spec.encoder} depth {spec.encoder_depth}, patch {args.patch}, batch {args.batch}"
    )
    print(f"data pipeline alone : {data_rate:8.1f} patches/s")
    print(f"model step alone    : {model_rate:8.1f} patches/s")
    print(f"full training loop  : {loop_rate:8.1f} patches/s (median over steps)")
    print(f"loop / slower part  : {loop_rate / slower:8.2f} (target >= 0.90)")


if __name__ == "__main__":
    main()
