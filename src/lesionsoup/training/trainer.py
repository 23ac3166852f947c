"""The training loop: resumable, reproducible, and fast where a GPU is present.

A run lives in one folder. While it trains, everything it needs to resume is
kept in ``<run>/.work`` (state, best checkpoint so far, snapshots, step log);
the declared outputs (``last``, ``best``, ``snapshots/``, ``log.csv``,
``validation.csv``, ``curves.png``) are published only when the run is
complete, so a workflow engine that deletes the outputs of a killed job never
deletes what the next attempt resumes from. Once they are published,
``.work`` is deleted: ``results/`` holds each checkpoint once. A run asked to
keep its optimiser state also publishes, in ``optimizer/``, the AdamW state
saved with its ``best`` checkpoint (the base of an FGG continuation) or its
``last`` (the base of an SWA continuation); a run started with
``init_optimizer`` (the continuation) loads it.

``.work`` and every published checkpoint carry the run's fingerprint (model,
settings, initialisation, input caches): a run whose inputs changed discards
its stale state and retrains instead of resuming or skipping.

On the CPU, two runs with the same seed give bit-identical weights, and a run
killed at any moment and restarted ends with the same weights as one that was
never interrupted: patches are a pure function of (seed, sample index), the
learning rate a pure function of the step, and the optimiser state is saved.

``train_run`` sets a run up (model, optimiser and progress from the saved
state), a ``Trainer`` runs it: ``Trainer.step`` trains on one batch and the
hooks in ``AFTER_STEP`` do everything else after each step (step log,
snapshots, validation, state, preemption); ``Trainer.finish`` publishes.

The step never waits for the device: its loss stays there, and the losses
of many steps are read back together every ``log_every`` steps and before
each validation and saved state (``lesionsoup.training.progress``). While a
run goes, ``log.csv``, ``validation.csv`` and ``curves.png`` in the run
folder are refreshed at every validation; the job log gets a progress bar on
a terminal, else one line every ``log_every`` steps.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from lesionsoup.core.atomic import atomic_copy
from lesionsoup.core.checkpoint import (
    INDEPENDENT,
    SHARED_INITIALISATION,
    copy_checkpoint,
    load_checkpoint,
    load_metadata,
    save_checkpoint,
    start_of,
    state_digest,
)
from lesionsoup.core.combos import combo_name
from lesionsoup.core.device import pick_device
from lesionsoup.core.fingerprint import Fingerprint, digest, fingerprint, open_state_folder
from lesionsoup.core.model import build_model
from lesionsoup.core.precision import Precision, resolve
from lesionsoup.core.preemption import Preempted, TerminationRequest
from lesionsoup.core.schedules import Schedule
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.plan.paths import OPTIMIZER_FOLDER, optimizer_file
from lesionsoup.training.append_log import AppendLog
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.losses import DiceOptions, LossWeights, segmentation_loss
from lesionsoup.training.progress import LOG_EVERY, PendingSteps, ProgressLine, Step
from lesionsoup.training.resume import (
    CorruptState,
    Progress,
    load_optimizer,
    load_state,
    save_optimizer,
    save_state,
)
from lesionsoup.training.run_lock import run_lock
from lesionsoup.training.sampling import PatchDataset, PatchSampler, ValidationImages
from lesionsoup.training.validation import validate

log = logging.getLogger(__name__)


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

    def optimizer(self, checkpoint: str) -> Path:
        """The published optimiser state of ``checkpoint`` (only runs asked to keep it)."""
        return self.root / OPTIMIZER_FOLDER / optimizer_file(checkpoint)

    def work_optimizer(self, checkpoint: str) -> Path:
        """The optimiser state saved with ``checkpoint`` (best so far, last) in ``.work``."""
        return self.work / f"{checkpoint}.optimizer.safetensors"


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
    init: Path | None,
    target: torch.device,
    init_optimizer: Path | None = None,
) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The model to train (from the shared initialisation when given) and its optimiser
    (with the state in ``init_optimizer`` when given: an FGG run's base's AdamW moments).

    Seeded here, so that a run restarted after a damaged state draws the
    random initialisation a fresh run draws.
    """
    torch.manual_seed(settings.seed)
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
        fused=True if target.type == "cuda" else None,  # takes the fp16 scaler's skip on device
    )
    if init_optimizer is not None:
        # FissionFusion's fgg.py builds AdamW(lr=LR1, weight_decay=WD), then loads the base's
        # optimizer state, groups included: its betas, eps and weight decay are the base's
        # (a continuation inherits the base's weight_decay, so the two agree) and every step
        # then sets the rate from the schedule, as Trainer.step does.
        load_optimizer(init_optimizer, optimizer)
    return model, optimizer


def _resumed_model(
    paths: RunPaths,
    spec: ModelSpec,
    settings: TrainSettings,
    init: Path | None,
    target: torch.device,
    current: Fingerprint,
    init_optimizer: Path | None = None,
) -> tuple[torch.nn.Module, torch.optim.Optimizer, Progress]:
    """The model, optimiser and progress to continue from: the saved state when it is readable,
    else (a torn or damaged state) a fresh start in an emptied work folder."""
    model, optimizer = _fresh_model(spec, settings, init, target, init_optimizer)
    try:
        progress = load_state(paths.work, model, optimizer)
    except CorruptState as error:
        log.warning("%s; starting the run afresh", error)
        shutil.rmtree(paths.work)
        open_state_folder(paths.work, current)
        model, optimizer = _fresh_model(spec, settings, init, target, init_optimizer)
        progress = None
    (paths.work / "snapshots").mkdir(exist_ok=True)  # after resuming: a damaged state empties .work
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
    keep_optimizer: tuple[str, ...] = (),
    init_optimizer: Path | None = None,
    precision: str = "auto",
    log_every: int = LOG_EVERY,
) -> dict[str, Any]:
    """Train (or resume, or skip if finished) one run; returns the ``last`` metadata.

    ``on_validation(step, scores)`` is called after each validation (e.g. to report to an
    Optuna trial); an exception it raises stops the run after its state is saved.
    ``keep_optimizer`` publishes the optimiser states of those checkpoints (``best``, ``last``),
    ``init_optimizer`` starts from a published one. ``precision``: one of ``PRECISIONS``;
    ``progress_bar`` allows a bar on a terminal (else a line every ``log_every`` steps).
    """
    paths = RunPaths(run_dir)
    with run_lock(paths.root):  # one writer per run folder
        settings = _swa_start(_in_steps(settings, caches, paths.root), init)
        lineage = _lineage(spec, init)
        current = run_fingerprint(spec, settings, lineage, caches)
        finished = _finished(paths, current, keep_optimizer)
        if finished is not None:
            return finished
        open_state_folder(paths.work, current)
        target, resolved, workers = _set_up_device(device, precision, threads, workers)
        model, optimizer, progress = _resumed_model(
            paths, spec, settings, init, target, current, init_optimizer
        )
        loader = _patch_loader(caches, spec, settings, progress, workers, target)
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
            run_metadata=_run_metadata(spec, settings, caches, current, lineage, extra_metadata),
            on_validation=on_validation,
            progress_bar=progress_bar and sys.stderr.isatty(),
            precision=resolved,
            log_every=log_every,
            keep_optimizer=keep_optimizer,
        )
        trainer.fit(loader)
        return trainer.finish()


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
    device: str, precision: str, threads: int, workers: int | None
) -> tuple[torch.device, Precision, int]:
    """The device, its resolved precision and the loader's workers; torch's threads set."""
    target = pick_device(device)
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
) -> DataLoader:
    """The batches of the steps still to train, in order.

    A patch is a pure function of (seed, sample index), so starting at the
    resumed step's first sample gives a resumed run the batches an
    uninterrupted one saw. None are left after an early stop: a run killed
    while publishing must not train on when it resumes.
    """
    sampler = PatchSampler.for_training(dict(caches), settings, spec.lesion_classes, settings.seed)
    remaining = 0 if progress.stopped_early else max(0, settings.steps - progress.step)
    dataset = PatchDataset(
        sampler,
        build_augmentation(settings.augmentation),
        length=remaining * settings.batch_size,
        start=progress.step * settings.batch_size,
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


@dataclass
class Trainer:
    """A run's model, optimiser and progress, the step that trains them, and what follows it.

    nnU-Net's split (setup, a training step, hooks around it) without its class
    hierarchy: ``step`` only trains; logging, snapshots, validation, state and
    preemption are the functions in ``AFTER_STEP``, run in that order after
    every step. ``scaler`` scales fp16 losses (a pass-through otherwise); its
    state travels with the saved state.
    """

    paths: RunPaths
    spec: ModelSpec
    settings: TrainSettings
    target: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    progress: Progress
    validation_images: list[ValidationImages]
    run_metadata: dict[str, Any]
    on_validation: Callable[[int, dict[str, Any]], None] | None = None
    progress_bar: bool = True
    keep_optimizer: tuple[str, ...] = ()  # publish these checkpoints' optimiser states
    precision: Precision = Precision("fp32", "cpu")  # train_run passes the resolved one
    log_every: int = LOG_EVERY
    schedule: Schedule = field(init=False)
    snapshot_steps: frozenset[int] = field(init=False)
    loss_weights: LossWeights = field(init=False)
    dice_options: DiceOptions = field(init=False)
    step_model: Callable[[torch.Tensor], torch.Tensor] = field(init=False)
    terminate: TerminationRequest = field(init=False)
    step_log: AppendLog = field(init=False)
    validation_log: AppendLog = field(init=False)
    scaler: torch.amp.GradScaler = field(init=False)
    pending: PendingSteps = field(init=False)
    line: ProgressLine = field(init=False)
    bar: tqdm = field(init=False)

    def __post_init__(self) -> None:
        if self.log_every < 1:
            raise ValueError(f"log_every must be a positive number of steps, not {self.log_every}")
        self.schedule = self.settings.lr_schedule
        self.snapshot_steps = frozenset(self.schedule.snapshot_steps())
        self.loss_weights = LossWeights(
            dice=self.settings.dice_weight, bce=self.settings.bce_weight
        )
        self.dice_options = DiceOptions(
            self.settings.dice_smooth,
            self.settings.dice_background,
            self.settings.dice_absent,  # type: ignore[arg-type]  # checked by DiceOptions
        )
        self.step_model = torch.compile(self.model) if self.settings.compile else self.model
        self.terminate = TerminationRequest()
        self.step_log = AppendLog(self.paths.work / "log.csv", self.progress.step)
        self.validation_log = AppendLog(self.paths.work / "validation.csv", self.progress.step)
        if self.validation_log.empty:  # a state saved before the work folder kept this log
            self.validation_log.write(self.progress.validation)
        self.scaler = self.precision.scaler()
        if self.scaler.is_enabled() and self.progress.scaler:
            self.scaler.load_state_dict(self.progress.scaler)
        self.pending = PendingSteps()
        self.line = ProgressLine(
            self.paths.root.name, self.settings.steps, self.log_every, self.progress.step
        )
        self.bar = tqdm(
            total=self.settings.steps,
            initial=self.progress.step,
            disable=not self.progress_bar,
            desc=self.paths.root.name,
            unit="step",
        )

    def fit(self, loader: DataLoader) -> None:
        """Train on every batch of ``loader``, each step followed by the hooks.

        The run stops early when validation says so, or when a hook raises
        (``Preempted`` after SIGTERM, a pruned trial) with the state saved.
        The logs and the progress bar are closed however it ends.
        """
        self.model.train()
        started = tick = time.perf_counter()
        with self.terminate, closing(self.step_log), closing(self.validation_log), self.bar:
            for batch in loader:
                step = self.step(batch, since=tick)
                for hook in AFTER_STEP:
                    hook(self, step)
                now = time.perf_counter()
                self.progress.wall_seconds += now - tick - step.seconds  # validation and saving
                tick = now
                if self.progress.stopped_early:
                    log.info("%s: early stop at step %d", self.paths.root, step.number)
                    self.save()
                    break
        seconds = time.perf_counter() - started
        log.info(
            "%s: %d steps in %.1f s this session", self.paths.root, self.progress.step, seconds
        )

    def step(self, batch: Mapping[str, torch.Tensor], since: float) -> Step:
        """One update at the schedule's learning rate: forward, loss, backward, clip, step.

        ``since`` is when the previous step's hooks ended, so the step's time
        includes waiting for its batch.
        """
        lr = self.schedule.lr_at(self.progress.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = batch["image"].to(self.target, non_blocking=True)
        if self.target.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            logits = self.step_model(images)
        loss = segmentation_loss(
            logits,
            batch["target"].to(self.target, non_blocking=True),
            batch["valid"].to(self.target, non_blocking=True),
            self.loss_weights,
            self.spec.head,
            self.spec.lesion_classes,
            self.dice_options,
        )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.settings.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.progress.step += 1
        self.progress.samples_seen += len(images)
        seconds = time.perf_counter() - since
        self.progress.wall_seconds += seconds
        return Step(self.progress.step, loss.detach(), lr, len(images), seconds)

    def read_back(self) -> None:
        """The pending steps' losses to the host (one sync): checked, logged, shown."""
        rows = self.pending.read_back(self.paths.root)
        if not rows:
            return
        self.step_log.write(row.as_csv() for row in rows)
        if self.bar.disable:
            self.line.show(rows)
        else:
            self.bar.set_postfix(loss=f"{rows[-1].loss:.4f}", lr=f"{rows[-1].lr:.2e}")

    def metadata(self, **extra: Any) -> dict[str, Any]:
        """The sidecar of a checkpoint saved now: how the run was made and how far it got."""
        return {
            **self.run_metadata,
            "step": self.progress.step,
            "samples_seen": self.progress.samples_seen,
            "wall_seconds": round(self.progress.wall_seconds, 3),
            "device_seconds": round(self.progress.wall_seconds, 3),
            "device": str(self.target),
            "precision": self.precision.name,
            "validation": self.progress.validation[-1] if self.progress.validation else {},
            **extra,
        }

    def save(self) -> None:
        """Save the training state, the logs flushed first so that they never lag the state.

        The losses are read back first: a state never includes a step with a non-finite loss.
        """
        self.read_back()
        self.step_log.flush()
        self.validation_log.flush()
        self.progress.scaler = self.scaler.state_dict()
        save_state(self.paths.work, self.model, self.optimizer, self.progress)

    def finish(self) -> dict[str, Any]:
        """Save ``last`` and publish the run's outputs; returns the ``last`` metadata."""
        final = self.metadata(
            stopped_early=self.progress.stopped_early, best_step=self.progress.best_step
        )
        save_checkpoint(self.paths.work / "last.safetensors", self.model.state_dict(), final)
        if not (self.paths.work / "best.safetensors").exists():  # ``best`` will be ``last``
            save_optimizer(self.paths.work_optimizer("best"), self.optimizer)
        if "last" in self.keep_optimizer:
            save_optimizer(self.paths.work_optimizer("last"), self.optimizer)
        _publish(self.paths, self.keep_optimizer)
        return final


def _due(trainer: Trainer, step: Step, every: int) -> bool:
    """Whether an every-N-steps action is due after ``step``: it always is after the last."""
    return step.number == trainer.settings.steps or step.number % every == 0


def _log_step(trainer: Trainer, step: Step) -> None:
    """The step kept for ``log.csv``, read back every ``log_every`` steps; the bar moved on."""
    trainer.pending.add(step)
    trainer.bar.update(1)
    if _due(trainer, step, trainer.log_every):
        trainer.read_back()


def _save_snapshot(trainer: Trainer, step: Step) -> None:
    """A snapshot after each update the schedule names (the minima of a cyclic rate)."""
    if step.number - 1 in trainer.snapshot_steps:
        trainer.read_back()  # no checkpoint holds a step whose loss was not finite
        save_checkpoint(
            trainer.paths.work / "snapshots" / f"step{step.number:07d}.safetensors",
            trainer.model.state_dict(),
            trainer.metadata(snapshot=True),
        )


def _validate(trainer: Trainer, step: Step) -> None:
    """Validation when due, the run folder's ``log.csv``, ``validation.csv`` and ``curves.png``
    refreshed, then ``on_validation``.

    The state is saved before ``on_validation`` is called, so that an exception
    it raises (a pruned trial) loses nothing.
    """
    if not _due(trainer, step, trainer.settings.validate_every):
        return
    trainer.read_back()  # a non-finite loss raises before a model trained on it is scored
    _record_validation(trainer)
    trainer.step_log.flush()
    trainer.validation_log.flush()
    if step.number < trainer.settings.steps:  # after the last step, publishing draws them
        _write_progress(
            trainer.paths,
            f"running: step {step.number} of {trainer.settings.steps}",
        )
    if trainer.on_validation is not None:
        trainer.save()
        trainer.on_validation(step.number, trainer.progress.validation[-1])


def _save_state(trainer: Trainer, step: Step) -> None:
    """The training state every ``state_every`` steps, after the last, and on SIGTERM."""
    if _due(trainer, step, trainer.settings.state_every) or trainer.terminate.requested:
        trainer.save()


def _stop_if_preempted(trainer: Trainer, step: Step) -> None:
    """After SIGTERM (state saved by ``_save_state``): stop; a rerun resumes at this step."""
    if trainer.terminate.requested:
        raise Preempted(
            f"{trainer.paths.root}: SIGTERM at step {step.number}; state saved; rerun resumes"
        )


#: What follows every step, in this order: a snapshot records the validation
#: before its step, the state saved includes the step's validation, and
#: preemption raises only once the state is saved.
AFTER_STEP: tuple[Callable[[Trainer, Step], None], ...] = (
    _log_step,
    _save_snapshot,
    _validate,
    _save_state,
    _stop_if_preempted,
)


def _record_validation(trainer: Trainer) -> None:
    """Score the model and record the result in the progress.

    A better score than any before makes the model ``best``; a run of
    ``early_stopping`` validations without one stops the run.
    """
    progress, settings = trainer.progress, trainer.settings
    spec, paths = trainer.spec, trainer.paths
    result = {
        "step": progress.step,
        **validate(
            trainer.model,
            trainer.validation_images,
            spec,
            settings.bins,
            trainer.precision.name,
            settings.monitor,
        ),
    }
    progress.validation.append(result)
    trainer.validation_log.write([result])
    log.info("%s: step %d validation %s", paths.root, progress.step, result)
    if math.isfinite(result["score"]) and result["score"] > progress.best_score:
        progress.best_score = result["score"]
        progress.best_step = progress.step
        progress.validations_without_gain = 0
        save_checkpoint(
            paths.work / "best.safetensors", trainer.model.state_dict(), trainer.metadata(best=True)
        )
        save_optimizer(paths.work_optimizer("best"), trainer.optimizer)  # as FissionFusion's
    else:
        progress.validations_without_gain += 1
        if settings.early_stopping and progress.validations_without_gain >= settings.early_stopping:
            progress.stopped_early = True


def _write_progress(paths: RunPaths, status: str = "") -> None:
    """``validation.csv``, ``log.csv`` and ``curves.png`` in the run folder, copied and drawn
    from the work folder's logs: refreshed at every validation while the run goes (``status``
    says how far it got), final when it is published."""
    from lesionsoup.training.curves import plot_training_curves

    for name in ("log.csv", "validation.csv"):
        atomic_copy(paths.work / name, paths.root / name)
    plot_training_curves(
        paths.root / "log.csv",
        paths.root / "validation.csv",
        paths.root / "curves.png",
        status=status,
    )


def _publish(paths: RunPaths, keep_optimizer: tuple[str, ...]) -> None:
    """Copy the finished run's outputs from the work folder to their declared places."""
    snapshots = paths.root / "snapshots"
    shutil.rmtree(snapshots, ignore_errors=True)  # a stale run's may have other steps
    snapshots.mkdir()
    for source in sorted((paths.work / "snapshots").glob("*.safetensors")):
        copy_checkpoint(source, snapshots / source.name)
    folder = paths.root / OPTIMIZER_FOLDER
    shutil.rmtree(folder, ignore_errors=True)  # an empty folder unless kept
    folder.mkdir()
    for checkpoint in keep_optimizer:
        atomic_copy(paths.work_optimizer(checkpoint), paths.optimizer(checkpoint))
    _write_progress(paths)
    best = paths.work / "best.safetensors"
    copy_checkpoint(best if best.exists() else paths.work / "last.safetensors", paths.best)
    copy_checkpoint(paths.work / "last.safetensors", paths.last)  # last: the run is complete
    shutil.rmtree(paths.work)


def publish_init(run_dir: Path, init_path: Path) -> None:
    """Turn a finished warm-up run into the combination's shared initialisation.

    The warm-up run folder is deleted afterwards: the initialisation is its only product.
    """
    state, meta = load_checkpoint(RunPaths(run_dir).last)
    meta = {**meta, "init_id": state_digest(state), "role": SHARED_INITIALISATION}
    meta.pop("parent", None)
    meta.pop("start", None)  # the warm-up started independently; its product is the shared start
    save_checkpoint(init_path, state, meta)
    shutil.rmtree(run_dir)
