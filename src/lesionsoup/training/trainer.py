"""The training loop: resumable, reproducible, and fast where a GPU is present.

A run lives in one folder. While it trains, everything it needs to resume is
kept in ``<run>/.work`` (state, best checkpoint so far, snapshots, step log);
the declared outputs (``last``, ``best``, ``snapshots/``, ``log.csv``,
``validation.csv``, ``curves.png``) are published only when the run is
complete, so a workflow engine that deletes the outputs of a killed job never
deletes what the next attempt resumes from. Once they are published,
``.work`` is deleted: ``results/`` holds each checkpoint once.

``.work`` and every published checkpoint carry the run's fingerprint (model,
settings, initialisation, input caches): a run whose inputs changed discards
its stale state and retrains instead of resuming or skipping.

On the CPU, two runs with the same seed give bit-identical weights, and a run
killed at any moment and restarted ends with the same weights as one that was
never interrupted: patches are a pure function of (seed, sample index), the
learning rate a pure function of the step, and the optimiser state is saved.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from lesionsoup.core.atomic import atomic_path
from lesionsoup.core.checkpoint import (
    copy_checkpoint,
    load_checkpoint,
    load_metadata,
    save_checkpoint,
    state_digest,
)
from lesionsoup.core.combos import combo_name
from lesionsoup.core.device import pick_device
from lesionsoup.core.fingerprint import Fingerprint, digest, fingerprint, open_state_folder
from lesionsoup.core.model import build_model
from lesionsoup.core.preemption import Preempted, TerminationRequest
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.inference.infer import autocast_for
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.losses import LossWeights, segmentation_loss
from lesionsoup.training.resume import CorruptState, Progress, load_state, save_state
from lesionsoup.training.sampling import PatchDataset, PatchSampler, ValidationImages
from lesionsoup.training.validation import validate

log = logging.getLogger(__name__)

LOG_FIELDS = ("step", "loss", "lr", "patches_per_s")


@dataclass
class RunPaths:
    root: Path
    work: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.work = self.root / ".work"

    @property
    def last(self) -> Path:
        return self.root / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.root / "best.safetensors"


def _common_size(caches: Mapping[str, Cache]) -> int:
    """The image size shared by a combination's caches (a model sees one resolution)."""
    sizes = {cache.size for cache in caches.values()}
    if len(sizes) != 1:
        listing = {name: cache.size for name, cache in caches.items()}
        raise ValueError(f"the caches of a combination must share one size, got {listing}")
    return sizes.pop()


def _lineage(spec: ModelSpec, init: Path | None) -> dict[str, Any]:
    """``parent`` and ``init_id`` of a run from a shared initialisation, checked against spec."""
    if init is None:
        return {}
    meta = load_metadata(init)
    if ModelSpec.from_dict(meta["architecture"]) != spec:
        raise ValueError(
            f"{init}: the initialisation's architecture {meta.get('architecture')} differs from "
            f"the configured one {spec.as_dict()}"
        )
    return {"parent": str(init), "init_id": meta["init_id"]}


def run_fingerprint(
    spec: ModelSpec,
    settings: TrainSettings,
    lineage: Mapping[str, Any],
    caches: Mapping[str, Cache],
) -> Fingerprint:
    """Everything a run's weights depend on."""
    return fingerprint(
        model=spec.as_dict(),
        settings=settings.as_dict(),
        init_id=lineage.get("init_id"),
        caches={name: cache.fingerprint for name, cache in sorted(caches.items())},
    )


def _fresh_model(
    spec: ModelSpec, settings: TrainSettings, init: Path | None, target: torch.device
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model to train (from the shared initialisation when given) and its optimiser."""
    model = build_model(spec)
    if init is not None:
        model.load_state_dict(load_checkpoint(init)[0])
    if settings.freeze_encoder:
        for parameter in model.encoder.parameters():
            parameter.requires_grad_(False)
    model.to(target)
    if target.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=settings.lr,
        weight_decay=settings.weight_decay,
    )
    return model, optimizer


def _resumed_model(
    paths: RunPaths,
    spec: ModelSpec,
    settings: TrainSettings,
    init: Path | None,
    target: torch.device,
    current: Fingerprint,
) -> tuple[torch.nn.Module, torch.optim.Optimizer, Progress]:
    """The model, optimiser and progress to continue from: the saved state when it is readable,
    else (a torn or damaged state) a fresh start in an emptied work folder."""
    model, optimizer = _fresh_model(spec, settings, init, target)
    try:
        progress = load_state(paths.work, model, optimizer)
    except CorruptState as error:
        log.warning("%s; starting the run afresh", error)
        shutil.rmtree(paths.work)
        open_state_folder(paths.work, current)
        model, optimizer = _fresh_model(spec, settings, init, target)
        progress = None
    if progress is None:
        return model, optimizer, Progress()
    log.info("%s: resuming at step %d of %d", paths.root, progress.step, settings.steps)
    return model, optimizer, progress


def _finished(paths: RunPaths, current: Fingerprint) -> dict[str, Any] | None:
    """The ``last`` metadata of a run already finished from the same inputs, else None."""
    if not paths.last.exists():
        return None
    finished = load_metadata(paths.last)
    if finished.get("fingerprint") != digest(current):
        log.warning("%s: published outputs are stale (inputs changed); retraining", paths.root)
        return None
    log.info("%s: already finished at step %s", paths.root, finished.get("step"))
    return finished


class _StepLog:
    """The per-step CSV, truncated to the resumed step so it never holds a row twice."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        rows = []
        if path.exists() and resume_step > 0:
            with open(path, newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= resume_step]
        self.handle = open(path, "w", newline="")  # noqa: SIM115 (closed in close())
        self.writer = csv.DictWriter(self.handle, fieldnames=LOG_FIELDS)
        self.writer.writeheader()
        self.writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow(row)

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def train_run(
    run_dir: Path,
    caches: Mapping[str, Cache],
    spec: ModelSpec,
    settings: TrainSettings,
    init: Path | None = None,
    threads: int = 1,
    workers: int | None = None,
    device: str = "auto",
    progress_bar: bool = True,
    extra_metadata: Mapping[str, Any] | None = None,
    on_validation: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume, or skip if finished) one run; returns the ``last`` metadata.

    ``on_validation(step, scores)`` is called after each validation (e.g. to
    report to an Optuna trial); an exception it raises stops the run after its
    state is saved.
    """
    paths = RunPaths(run_dir)
    lineage = _lineage(spec, init)
    current = run_fingerprint(spec, settings, lineage, caches)
    finished = _finished(paths, current)
    if finished is not None:
        shutil.rmtree(paths.work, ignore_errors=True)  # a publish killed before its clean-up
        return finished
    open_state_folder(paths.work, current)
    (paths.work / "snapshots").mkdir(exist_ok=True)
    target = pick_device(device)
    workers = max(0, threads - 1) if workers is None else workers
    torch.set_num_threads(max(1, threads - workers) if target.type == "cpu" else threads)
    torch.manual_seed(settings.seed)
    model, optimizer, progress = _resumed_model(paths, spec, settings, init, target, current)

    sampler = PatchSampler.for_training(dict(caches), settings, spec.lesion_classes, settings.seed)
    remaining = settings.steps - progress.step
    dataset = PatchDataset(
        sampler,
        build_augmentation(settings.augmentation),
        length=max(0, remaining) * settings.batch_size,
        start=progress.step * settings.batch_size,
    )
    loader = DataLoader(
        dataset,
        batch_size=settings.batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=target.type == "cuda",
        persistent_workers=False,
    )
    validation_images = [
        ValidationImages(cache, "valid", spec.lesion_classes) for cache in caches.values()
    ]
    schedule = settings.lr_schedule
    snapshots = set(schedule.snapshot_steps())
    weights = LossWeights(dice=settings.dice_weight, bce=settings.bce_weight)
    step_model = torch.compile(model) if settings.compile else model

    metadata_base = {
        "architecture": spec.as_dict(),
        "hyperparameters": settings.as_dict(),
        "combination": combo_name(caches),
        "datasets": sorted(caches),
        "cache_size": _common_size(caches),
        "fingerprint": digest(current),
        **lineage,
        **(extra_metadata or {}),
    }

    def metadata(**extra: Any) -> dict[str, Any]:
        return {
            **metadata_base,
            "step": progress.step,
            "samples_seen": progress.samples_seen,
            "wall_seconds": round(progress.wall_seconds, 3),
            "device_seconds": round(progress.wall_seconds, 3),
            "device": str(target),
            "validation": progress.validation[-1] if progress.validation else {},
            **extra,
        }

    step_log = _StepLog(paths.work / "log.csv", progress.step)
    model.train()
    bar = tqdm(
        total=settings.steps,
        initial=progress.step,
        disable=not progress_bar,
        desc=paths.root.name,
        unit="step",
    )
    started = tick = time.perf_counter()
    try:
        with TerminationRequest() as terminate:
            for batch in loader:
                lr = schedule.lr_at(progress.step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images = batch["image"].to(target, non_blocking=True)
                if target.type == "cuda":
                    images = images.contiguous(memory_format=torch.channels_last)
                with autocast_for(target):
                    logits = step_model(images)
                loss = segmentation_loss(
                    logits,
                    batch["target"].to(target, non_blocking=True),
                    batch["valid"].to(target, non_blocking=True),
                    weights,
                    spec.head,
                    spec.lesion_classes,
                )
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{paths.root}: loss is {loss.item()} at step {progress.step}; "
                        "lower the learning rate"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if settings.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                optimizer.step()
                completed = progress.step
                progress.step += 1
                progress.samples_seen += len(images)
                # the step's time includes waiting for its batch: the loop's real throughput
                elapsed = time.perf_counter() - tick
                progress.wall_seconds += elapsed
                step_log.write(
                    {
                        "step": progress.step,
                        "loss": f"{loss.item():.6f}",
                        "lr": f"{lr:.6e}",
                        "patches_per_s": f"{len(images) / max(elapsed, 1e-9):.2f}",
                    }
                )
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.2e}")
                if completed in snapshots:
                    save_checkpoint(
                        paths.work / "snapshots" / f"step{progress.step:07d}.safetensors",
                        model.state_dict(),
                        metadata(snapshot=True),
                    )
                final = progress.step == settings.steps
                if final or progress.step % settings.validate_every == 0:
                    _record_validation(
                        model, validation_images, spec, settings, progress, paths, metadata
                    )
                    if on_validation is not None:
                        step_log.flush()
                        save_state(paths.work, model, optimizer, progress)
                        on_validation(progress.step, progress.validation[-1])
                if final or progress.step % settings.state_every == 0 or terminate.requested:
                    step_log.flush()
                    save_state(paths.work, model, optimizer, progress)
                if terminate.requested:
                    raise Preempted(
                        f"{paths.root}: SIGTERM at step {progress.step}; state saved; rerun resumes"
                    )
                now = time.perf_counter()
                progress.wall_seconds += now - tick - elapsed  # validation and saving
                tick = now
                if progress.stopped_early:
                    log.info("%s: early stop at step %d", paths.root, progress.step)
                    save_state(paths.work, model, optimizer, progress)
                    break
    finally:
        bar.close()
        step_log.close()
    log.info(
        "%s: %d steps in %.1f s this session",
        paths.root,
        progress.step,
        time.perf_counter() - started,
    )
    final_metadata = metadata(stopped_early=progress.stopped_early, best_step=progress.best_step)
    save_checkpoint(paths.work / "last.safetensors", model.state_dict(), final_metadata)
    _publish(paths, progress)
    return final_metadata


def _record_validation(
    model: torch.nn.Module,
    images: list[ValidationImages],
    spec: ModelSpec,
    settings: TrainSettings,
    progress: Progress,
    paths: RunPaths,
    metadata: Any,
) -> None:
    result = {"step": progress.step, **validate(model, images, spec, settings.bins)}
    progress.validation.append(result)
    log.info("%s: step %d validation %s", paths.root, progress.step, result)
    if math.isfinite(result["score"]) and result["score"] > progress.best_score:
        progress.best_score = result["score"]
        progress.best_step = progress.step
        progress.validations_without_gain = 0
        save_checkpoint(paths.work / "best.safetensors", model.state_dict(), metadata(best=True))
    else:
        progress.validations_without_gain += 1
        if settings.early_stopping and progress.validations_without_gain >= settings.early_stopping:
            progress.stopped_early = True


def _publish(paths: RunPaths, progress: Progress) -> None:
    """Copy the finished run's outputs from the work folder to their declared places."""
    from lesionsoup.training.curves import plot_training_curves

    snapshots = paths.root / "snapshots"
    shutil.rmtree(snapshots, ignore_errors=True)  # a stale run's may have other steps
    snapshots.mkdir()
    for source in sorted((paths.work / "snapshots").glob("*.safetensors")):
        copy_checkpoint(source, snapshots / source.name)
    validation_csv = paths.root / "validation.csv"
    _write_validation(progress.validation, validation_csv)
    with atomic_path(paths.root / "log.csv") as tmp:
        shutil.copyfile(paths.work / "log.csv", tmp)
    plot_training_curves(paths.root / "log.csv", validation_csv, paths.root / "curves.png")
    best = paths.work / "best.safetensors"
    copy_checkpoint(best if best.exists() else paths.work / "last.safetensors", paths.best)
    copy_checkpoint(paths.work / "last.safetensors", paths.last)  # last: the run is complete
    shutil.rmtree(paths.work)


def _write_validation(rows: list[dict[str, Any]], path: Path) -> None:
    fields = list(rows[0]) if rows else ["step", "score"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def publish_init(run_dir: Path, init_path: Path) -> None:
    """Turn a finished warm-up run into the combination's shared initialisation.

    The warm-up run folder is deleted afterwards: the initialisation is its only product.
    """
    state, meta = load_checkpoint(RunPaths(run_dir).last)
    meta = {**meta, "init_id": state_digest(state), "role": "shared-initialisation"}
    meta.pop("parent", None)
    save_checkpoint(init_path, state, meta)
    shutil.rmtree(run_dir)
