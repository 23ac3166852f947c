"""Setting a run up and running it: resumable, reproducible, and fast where a GPU is present.

``train_run`` trains one run in its folder (``lesionsoup.training.run_folder``):
it resolves what the run is made from (``resolve_run``: settings in steps,
lineage, fingerprint), skips a run already finished from the same inputs,
and otherwise sets a ``Trainer`` up (``set_up_trainer``: device, model,
optimiser and progress from the saved state, the batches still to train)
and runs it (``lesionsoup.training.loop``). A run started with
``init_optimizer`` (a continuation) loads its base's published optimiser state.

``.work`` and every published checkpoint carry the run's fingerprint (model,
settings, initialisation, input caches): a run whose inputs changed discards
its stale state and retrains instead of resuming or skipping.

On the CPU, two runs with the same seed give bit-identical weights, and a run
killed at any moment and restarted ends with the same weights as one that was
never interrupted: patches are a pure function of (seed, sample index), the
learning rate a pure function of the step, and the optimiser state is saved.

A run with ``devices: N`` trains as N ranks under a supervisor
(``lesionsoup.training.supervisor``), each set up here with its own slice of
every batch. A step runs its batch as micro-batches that fit the device
(``lesionsoup.training.micro_batch``); one that runs out of device memory
halves them and resumes from the last saved state.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import logging
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from lesionsoup.core.checkpoint import INDEPENDENT, load_checkpoint, load_metadata, start_of
from lesionsoup.core.combos import combo_name
from lesionsoup.core.fingerprint import Fingerprint, digest, fingerprint, open_state_folder
from lesionsoup.core.model import build_model
from lesionsoup.core.precision import Precision, resolve
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.distributed import Ranks
from lesionsoup.training.loop import Trainer
from lesionsoup.training.micro_batch import AUTO, MicroBatchTooLarge, halved, probe
from lesionsoup.training.progress import LOG_EVERY
from lesionsoup.training.resume import CorruptState, Progress, load_optimizer, load_state
from lesionsoup.training.run_folder import RunPaths
from lesionsoup.training.run_lock import run_lock
from lesionsoup.training.sampling import PatchDataset, PatchSampler, Shard, ValidationImages
from lesionsoup.training.supervisor import supervise
from lesionsoup.training.sync_batchnorm import synchronised

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How a run is trained, beside what it is (model spec, settings, caches).

    ``init``: the checkpoint it starts from (a shared initialisation, a continuation's base),
    none for an independent start; ``init_optimizer``: a published optimiser state to start
    from (a continuation's base's); ``keep_optimizer``: the checkpoints (``best``, ``last``)
    whose optimiser states are published. ``pretrained_cache``: the folder pretrained encoder
    weights are read from offline (``lesionsoup.core.pretrained``; none: the Hugging Face
    cache, downloading once). ``threads``: the job's cores, split evenly over
    its devices' processes, of which ``workers`` load batches (default: all but one).
    ``device`` and ``precision`` as ``pick_device`` and ``PRECISIONS`` name them.
    ``micro_batch``: ``auto`` (the largest that fits, probed) or a number of patches per
    forward pass. ``progress_bar`` allows a bar on a terminal (else a line every
    ``log_every`` steps). ``extra_metadata`` is recorded in every checkpoint.
    ``on_validation(step, scores)`` is called after each validation (e.g. to report to an
    Optuna trial); an exception it raises stops the run after its state is saved.
    ``trackers``: where the logs' values also go (``lesionsoup.training.trackers``), writing
    in ``tracking_dir`` (none: the run folder); like the precision, not part of the run.
    """

    init: Path | None = None
    init_optimizer: Path | None = None
    keep_optimizer: tuple[str, ...] = ()
    pretrained_cache: Path | None = None
    threads: int = 1
    workers: int | None = None
    device: str = "auto"
    precision: str = "auto"
    micro_batch: str | int = AUTO
    progress_bar: bool = True
    log_every: int = LOG_EVERY
    extra_metadata: Mapping[str, Any] | None = None
    on_validation: Callable[[int, dict[str, Any]], None] | None = None
    trackers: tuple[str, ...] = ()
    tracking_dir: Path | None = None


@dataclass(frozen=True)
class ResolvedRun:
    """What a run is made from, as it trains: its settings in steps, its lineage (``start``,
    and ``parent`` and ``init_id`` where it starts from a checkpoint) and its fingerprint."""

    settings: TrainSettings
    lineage: Mapping[str, Any]
    fingerprint: Fingerprint


def train_run(
    run_dir: Path,
    caches: Mapping[str, Cache],
    spec: ModelSpec,
    settings: TrainSettings,
    options: RunOptions = RunOptions(),
) -> dict[str, Any]:
    """Train (or resume, or skip if finished) one run; returns the ``last`` metadata."""
    paths = RunPaths(run_dir)
    with run_lock(paths.root):  # one writer per run folder
        run = resolve_run(paths.root, caches, spec, settings, options.init)
        finished = _finished(paths, run.fingerprint, options.keep_optimizer)
        if finished is not None:
            return finished
        open_state_folder(paths.work, run.fingerprint)
        return _train_fitting(paths, caches, spec, run, options)


def _train_fitting(
    paths: RunPaths,
    caches: Mapping[str, Cache],
    spec: ModelSpec,
    run: ResolvedRun,
    options: RunOptions,
) -> dict[str, Any]:
    """Train to the end on the run's devices, halving the micro-batch and resuming from the
    last saved state each time one runs out of device memory; the ``last`` metadata."""
    while True:
        try:
            if run.settings.devices == 1:
                return train_rank(paths, caches, spec, run, options, Ranks(), options.on_validation)
            job = functools.partial(
                train_rank,
                paths,
                caches,
                spec,
                run,
                dataclasses.replace(options, on_validation=None),
            )
            return supervise(job, run.settings.devices, options.device, options.on_validation)
        except MicroBatchTooLarge as error:
            options = dataclasses.replace(options, micro_batch=halved(error.micro_batch))
            log.warning("%s; resuming with micro-batch %d", error, options.micro_batch)
        gc.collect()  # the failed step's tensors, freed with its traceback
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def train_rank(
    paths: RunPaths,
    caches: Mapping[str, Cache],
    spec: ModelSpec,
    run: ResolvedRun,
    options: RunOptions,
    ranks: Ranks,
    on_validation: Callable[[int, dict[str, Any]], None] | None,
) -> dict[str, Any] | None:
    """One rank's part of the run (all of it on one device): set up, trained, and published by
    rank 0, whose ``last`` metadata is returned."""
    options = dataclasses.replace(options, on_validation=on_validation)
    trainer, loader = set_up_trainer(paths, caches, spec, run, options, ranks)
    trainer.fit(loader)
    return trainer.finish() if ranks.writes else None


def resolve_run(
    root: Path,
    caches: Mapping[str, Cache],
    spec: ModelSpec,
    settings: TrainSettings,
    init: Path | None,
) -> ResolvedRun:
    """The run's settings in steps (an SWA continuation's start rate read from its base), its
    lineage (checked against ``spec``) and the fingerprint of everything its weights depend on."""
    settings = _swa_start(_in_steps(settings, caches, root), init)
    lineage = _lineage(spec, init)
    return ResolvedRun(settings, lineage, run_fingerprint(spec, settings, lineage, caches))


def set_up_trainer(
    paths: RunPaths,
    caches: Mapping[str, Cache],
    spec: ModelSpec,
    run: ResolvedRun,
    options: RunOptions,
    ranks: Ranks = Ranks(),  # noqa: B008 (frozen)
) -> tuple[Trainer, DataLoader]:
    """A ``Trainer`` ready to continue the run from its work folder (opened for
    ``run.fingerprint``), and the batches of the steps it has left (this rank's slice)."""
    settings = run.settings
    target, precision, workers = _set_up_device(
        ranks.device(options.device),
        options.precision,
        max(1, options.threads // ranks.world),
        options.workers,
    )
    micro_batch = _micro_batch(options.micro_batch, spec, settings, target, precision, ranks)
    model, optimizer, progress = _resumed_model(paths, spec, run, options, target, ranks)
    loader = _patch_loader(caches, spec, settings, progress, workers, target, ranks)
    trainer = Trainer(
        paths,
        spec,
        settings,
        target,
        model,
        optimizer,
        progress,
        validation_images=[
            ValidationImages(cache, "valid", spec.lesion_classes) for cache in caches.values()
        ],
        run_metadata=_run_metadata(
            spec, settings, caches, run.fingerprint, run.lineage, options.extra_metadata
        ),
        on_validation=options.on_validation,
        progress_bar=options.progress_bar and sys.stderr.isatty() and ranks.writes,
        precision=precision,
        log_every=options.log_every,
        keep_optimizer=options.keep_optimizer,
        ranks=ranks,
        micro_batch=micro_batch,
        trackers=options.trackers,
        tracking_dir=options.tracking_dir,
    )
    return trainer, loader


def _micro_batch(
    asked: str | int,
    spec: ModelSpec,
    settings: TrainSettings,
    target: torch.device,
    precision: Precision,
    ranks: Ranks,
) -> int:
    """The patches of one forward pass: the number asked for (at most the batch), or the
    largest that fits every rank's device (``auto``); logged."""
    if asked == AUTO:
        micro_batch = ranks.minimum(probe(spec, settings, target, precision))
    else:
        micro_batch = min(int(asked), settings.batch_size)
    log.info(
        "micro-batch %d of the batch of %d (%s)%s",
        micro_batch,
        settings.batch_size,
        "probed" if asked == AUTO else "asked",
        ""
        if micro_batch == settings.batch_size
        else ": BatchNorm and the Dice pool each micro-batch",
    )
    return micro_batch


def _common_size(caches: Mapping[str, Cache]) -> int:
    """The image size shared by a combination's caches (a model sees one resolution)."""
    sizes = {cache.size for cache in caches.values()}
    if len(sizes) != 1:
        listing = {name: cache.size for name, cache in caches.items()}
        raise ValueError(f"the caches of a combination must share one size, got {listing}")
    return sizes.pop()


def _lineage(spec: ModelSpec, init: Path | None) -> dict[str, Any]:
    """How a run starts: ``start`` (shared or independent, a continuation its base's), and
    ``parent`` and ``init_id`` where it starts from a checkpoint, checked against spec."""
    if init is None:
        return {"start": INDEPENDENT}
    meta = load_metadata(init)
    if ModelSpec.from_dict(meta["architecture"]) != spec:
        raise ValueError(
            f"{init}: the initialisation's architecture {meta.get('architecture')} differs from "
            f"the configured one {spec.as_dict()}"
        )
    lineage = {"start": start_of(meta), "parent": str(init)}
    if "init_id" in meta:
        lineage["init_id"] = meta["init_id"]
    return lineage


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
    spec: ModelSpec,
    settings: TrainSettings,
    options: RunOptions,
    target: torch.device,
    ranks: Ranks,
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model to train (from ``options.init`` when given, else from the pretrained encoder
    in ``options.pretrained_cache``; its BatchNorm synchronised over
    several ranks when the settings ask) and its optimiser (with the state in
    ``options.init_optimizer`` when given: a continuation's base's AdamW moments).

    Seeded here, so that a run restarted after a damaged state draws the
    random initialisation a fresh run draws.
    """
    torch.manual_seed(settings.seed)
    model = build_model(spec, options.pretrained_cache)
    if options.init is not None:
        model.load_state_dict(load_checkpoint(options.init)[0])
    if ranks.world > 1 and settings.sync_batchnorm:
        model = synchronised(model, target.type)
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
        fused=True if target.type == "cuda" else None,  # takes the fp16 scaler's skip on device
    )
    if options.init_optimizer is not None:
        # FissionFusion's fgg.py builds AdamW(lr=LR1, weight_decay=WD), then loads the base's
        # optimizer state, groups included: its betas, eps and weight decay are the base's
        # (a continuation inherits the base's weight_decay, so the two agree) and every step
        # then sets the rate from the schedule, as Trainer.step does.
        load_optimizer(options.init_optimizer, optimizer)
    return model, optimizer


def _resumed_model(
    paths: RunPaths,
    spec: ModelSpec,
    run: ResolvedRun,
    options: RunOptions,
    target: torch.device,
    ranks: Ranks,
) -> tuple[torch.nn.Module, torch.optim.Optimizer, Progress]:
    """The model, optimiser and progress to continue from: the saved state when every rank
    reads it, else (a torn or damaged state) a fresh start in a work folder rank 0 empties."""
    settings = run.settings
    model, optimizer = _fresh_model(spec, settings, options, target, ranks)
    damage = None
    try:
        progress = load_state(paths.work, model, optimizer)
    except CorruptState as error:
        damage = error
    if ranks.any(damage is not None):
        log.warning("%s; starting the run afresh", damage or "damaged state on another rank")
        ranks.barrier()  # every rank is done reading it
        if ranks.writes:
            shutil.rmtree(paths.work)
            open_state_folder(paths.work, run.fingerprint)
            (paths.work / "snapshots").mkdir()
        ranks.barrier()
        model, optimizer = _fresh_model(spec, settings, options, target, ranks)
        progress = None
    if ranks.writes:
        (paths.work / "snapshots").mkdir(exist_ok=True)
    if progress is None:
        return model, optimizer, Progress()
    log.info("%s: resuming at step %d of %d", paths.root, progress.step, settings.steps)
    return model, optimizer, progress


def _finished(
    paths: RunPaths, current: Fingerprint, keep_optimizer: tuple[str, ...]
) -> dict[str, Any] | None:
    """The ``last`` metadata of a run already finished from the same inputs (and with its
    optimiser state when asked to keep it), its leftover work folder removed; else None."""
    if not paths.last.exists():
        return None
    finished = load_metadata(paths.last)
    if finished.get("fingerprint") != digest(current):
        log.warning("%s: published outputs are stale (inputs changed); retraining", paths.root)
        return None
    if not all(paths.optimizer(checkpoint).exists() for checkpoint in keep_optimizer):
        log.warning(
            "%s: finished without its optimiser state, now asked for; retraining", paths.root
        )
        return None
    log.info("%s: already finished at step %s", paths.root, finished.get("step"))
    shutil.rmtree(paths.work, ignore_errors=True)  # a publish killed before its clean-up
    return finished


def _in_steps(settings: TrainSettings, caches: Mapping[str, Cache], run: Path) -> TrainSettings:
    """``settings`` with a length and validation interval given in epochs turned into steps
    (an epoch: one patch per training image of the combination), logged."""
    if not (settings.epochs or settings.validate_every_epochs or settings.cycle_epochs):
        return settings
    images = sum(len(cache.ids_in("train")) for cache in caches.values())
    resolved = settings.in_steps(images)
    log.info(
        "%s: %d training images, batch %d: %d steps an epoch; %d steps (epochs %s), "
        "validation every %d steps, cycles of %d steps",
        run,
        images,
        settings.batch_size,
        settings.steps_per_epoch(images),
        resolved.steps,
        settings.epochs or "not set",
        resolved.validate_every,
        resolved.cycle_steps,
    )
    return resolved


def _swa_start(settings: TrainSettings, init: Path | None) -> TrainSettings:
    """An SWA continuation without a ``start_lr`` anneals from its base's final learning rate
    (read from the base checkpoint it starts from), as torch's SWALR anneals from the rate the
    optimiser had."""
    if settings.schedule != "swa" or settings.start_lr > 0 or init is None:
        return settings
    base = load_metadata(init)
    final = TrainSettings.from_dict(base["hyperparameters"]).lr_schedule.lr_at(base["step"] - 1)
    log.info("%s: SWA anneals from the base's final learning rate %.3g", init, final)
    return dataclasses.replace(settings, start_lr=final)


def _set_up_device(
    target: torch.device, precision: str, threads: int, workers: int | None
) -> tuple[torch.device, Precision, int]:
    """The device, its resolved precision and the loader's workers; torch's threads set."""
    resolved = resolve(precision, target)
    torch.set_float32_matmul_precision(resolved.matmul_precision)
    if target.type == "cuda":
        torch.backends.cudnn.benchmark = True  # patches of one size: tune the kernels once
    workers = max(0, threads - 1) if workers is None else workers
    torch.set_num_threads(max(1, threads - workers) if target.type == "cpu" else threads)
    return target, resolved, workers


def _patch_loader(
    caches: Mapping[str, Cache],
    spec: ModelSpec,
    settings: TrainSettings,
    progress: Progress,
    workers: int,
    target: torch.device,
    ranks: Ranks,
) -> DataLoader:
    """This rank's batches of the steps still to train, in order.

    A patch is a pure function of (seed, sample index), so starting at the
    resumed step's first sample gives a resumed run the batches an
    uninterrupted one saw, and each rank takes its slice of every step's
    patches (``Shard``). None are left after an early stop: a run killed
    while publishing must not train on when it resumes.
    """
    sampler = PatchSampler.for_training(dict(caches), settings, spec.lesion_classes, settings.seed)
    remaining = 0 if progress.stopped_early else max(0, settings.steps - progress.step)
    dataset = PatchDataset(
        sampler,
        build_augmentation(settings.augmentation),
        length=remaining * settings.batch_size,
        start=progress.step * settings.batch_size * ranks.world,
        shard=Shard(ranks.rank, ranks.world, settings.batch_size),
    )
    return DataLoader(
        dataset,
        batch_size=settings.batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=target.type == "cuda",
        persistent_workers=False,
    )


def _run_metadata(
    spec: ModelSpec,
    settings: TrainSettings,
    caches: Mapping[str, Cache],
    current: Fingerprint,
    lineage: Mapping[str, Any],
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What every checkpoint of the run records about how it was made."""
    return {
        "architecture": spec.as_dict(),
        "hyperparameters": settings.as_dict(),
        "combination": combo_name(caches),
        "datasets": sorted(caches),
        "cache_size": _common_size(caches),
        "fingerprint": digest(current),
        **lineage,
        **(extra or {}),
    }
