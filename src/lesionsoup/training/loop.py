"""The training loop: a ``Trainer`` steps through the batches, hooks do the rest.

``Trainer.step`` trains on one batch and the hooks in ``AFTER_STEP`` do
everything else after each step (step log, snapshots, validation, state,
preemption); ``Trainer.finish`` saves ``last`` and publishes the run folder
(``lesionsoup.training.run_folder``). How the model, optimiser, progress and
batches are made (fresh, resumed, from an initialisation) is
``lesionsoup.training.run``'s business: the loop takes them ready.

The step never waits for the device: its loss stays there, and the losses
of many steps are read back together every ``log_every`` steps and before
each validation and saved state (``lesionsoup.training.progress``). While a
run goes, ``log.csv``, ``validation.csv`` and ``curves.png`` in the run
folder are refreshed at every validation; the job log gets a progress bar on
a terminal, else one line every ``log_every`` steps. The trackers
(``lesionsoup.training.trackers``) get each row of both logs as it is written.

Under several devices (``lesionsoup.training.distributed``) every rank runs
the loop on its slice of each batch; rank 0 alone validates, logs and saves,
and the ranks agree after each step on whether to stop (SIGTERM on any of
them) and after each validation on its result. A step may accumulate
micro-batches (``lesionsoup.training.micro_batch``); one that runs out of
device memory raises ``MicroBatchTooLarge``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from lesionsoup.core.checkpoint import save_checkpoint
from lesionsoup.core.precision import Precision
from lesionsoup.core.preemption import Preempted, TerminationRequest
from lesionsoup.core.schedules import Schedule
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.training.append_log import AppendLog
from lesionsoup.training.distributed import Ranks
from lesionsoup.training.losses import BatchScope, DiceOptions, LossWeights, segmentation_loss
from lesionsoup.training.micro_batch import MicroBatchTooLarge, chunks
from lesionsoup.training.progress import LOG_EVERY, PendingSteps, ProgressLine, Step
from lesionsoup.training.resume import Progress, save_optimizer, save_state
from lesionsoup.training.run_folder import RunPaths, publish, write_progress
from lesionsoup.training.sampling import ValidationImages
from lesionsoup.training.trackers import Trackers, open_trackers
from lesionsoup.training.validation import validate

log = logging.getLogger(__name__)


@dataclass
class Trainer:
    """A run's model, optimiser and progress, the step that trains them, and what follows it.

    nnU-Net's split (setup, a training step, hooks around it) without its class
    hierarchy: ``step`` only trains; logging, snapshots, validation, state and
    preemption are the functions in ``AFTER_STEP``, run in that order after
    every step. ``scaler`` scales fp16 losses (a pass-through otherwise); its
    state travels with the saved state. ``ranks``: this process among the run's
    processes (one by default); ``micro_batch``: the patches of one forward pass
    (0: the whole batch). Only the writing rank has the logs, and the ``trackers`` (their
    names), which write in ``tracking_dir`` (none: the run folder).
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
    precision: Precision = Precision("fp32", "cpu")  # set_up_trainer passes the resolved one
    log_every: int = LOG_EVERY
    ranks: Ranks = Ranks()
    micro_batch: int = 0
    trackers: tuple[str, ...] = ()
    tracking_dir: Path | None = None  # where the trackers write; None: the run folder
    schedule: Schedule = field(init=False)
    snapshot_steps: frozenset[int] = field(init=False)
    loss_weights: LossWeights = field(init=False)
    dice_options: DiceOptions = field(init=False)
    parallel: torch.nn.Module = field(init=False)
    step_model: Callable[[torch.Tensor], torch.Tensor] = field(init=False)
    terminate: TerminationRequest = field(init=False)
    logs: tuple[AppendLog, AppendLog] | None = field(init=False)
    tracking: Trackers = field(init=False)
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
        self.micro_batch = min(
            self.micro_batch or self.settings.batch_size, self.settings.batch_size
        )
        self.parallel = self.ranks.wrap(self.model, self.target)
        self.step_model = torch.compile(self.parallel) if self.settings.compile else self.parallel
        self.terminate = TerminationRequest()
        self.logs = self._open_logs() if self.ranks.writes else None
        self.tracking = Trackers()
        if self.ranks.writes:
            folder = self.tracking_dir or self.paths.root
            self.tracking = open_trackers(
                self.trackers, folder, self.progress.step, self.run_metadata
            )
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

    def _open_logs(self) -> tuple[AppendLog, AppendLog]:
        """``log.csv`` and ``validation.csv`` of the work folder, cut back to the progress."""
        step_log = AppendLog(self.paths.work / "log.csv", self.progress.step)
        validation_log = AppendLog(self.paths.work / "validation.csv", self.progress.step)
        if validation_log.empty:  # a state saved before the work folder kept this log
            validation_log.write(self.progress.validation)
        return step_log, validation_log

    @property
    def step_log(self) -> AppendLog:
        assert self.logs is not None, "only the writing rank logs"
        return self.logs[0]

    @property
    def validation_log(self) -> AppendLog:
        assert self.logs is not None, "only the writing rank logs"
        return self.logs[1]

    def fit(self, loader: DataLoader) -> None:
        """Train on every batch of ``loader``, each step followed by the hooks.

        The run stops early when validation says so, or when a hook raises
        (``Preempted`` after SIGTERM, a pruned trial) with the state saved.
        The logs and the progress bar are closed however it ends.
        """
        self.model.train()
        started = tick = time.perf_counter()
        with ExitStack() as stack:
            stack.enter_context(self.terminate)
            stack.enter_context(self.bar)
            for append_log in self.logs or ():
                stack.enter_context(closing(append_log))
            stack.enter_context(closing(self.tracking))
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
        """One update at the schedule's learning rate: forward and backward passes of the
        micro-batches, gradients averaged over the ranks, clipped, and the optimiser's step.

        ``since`` is when the previous step's hooks ended, so the step's time
        includes waiting for its batch.
        """
        lr = self.schedule.lr_at(self.progress.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = {name: tensor.to(self.target, non_blocking=True) for name, tensor in batch.items()}
        patches = len(batch["image"])
        self.optimizer.zero_grad(set_to_none=True)
        valid_pixels = self.ranks.sum(batch["valid"].sum())
        loss = torch.zeros((), device=self.target)
        pieces = list(chunks(batch, self.micro_batch))
        for index, piece in enumerate(pieces):
            scope = BatchScope(valid_pixels, self.ranks.sum, len(piece["image"]) / patches)
            with self._gradients_averaged(index == len(pieces) - 1):
                loss += self._forward_backward(piece, scope)
        if self.settings.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.progress.step += 1
        self.progress.samples_seen += patches * self.ranks.world
        seconds = time.perf_counter() - since
        self.progress.wall_seconds += seconds
        return Step(self.progress.step, loss, lr, patches * self.ranks.world, seconds)

    def _gradients_averaged(self, last: bool) -> contextlib.AbstractContextManager:
        """Where the ranks average their gradients: after a step's last micro-batch only."""
        if last or self.parallel is self.model:
            return contextlib.nullcontext()
        return self.parallel.no_sync()  # type: ignore[operator]  # DistributedDataParallel

    def _forward_backward(
        self, piece: Mapping[str, torch.Tensor], scope: BatchScope
    ) -> torch.Tensor:
        """A micro-batch's loss (detached), its gradient added; ``MicroBatchTooLarge`` when the
        device runs out of memory."""
        images = piece["image"]
        if self.target.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        try:
            with self.precision.autocast():
                logits = self.step_model(images)
            loss = segmentation_loss(
                logits,
                piece["target"],
                piece["valid"],
                self.loss_weights,
                self.spec.head,
                self.spec.lesion_classes,
                self.dice_options,
                scope,
            )
            self.scaler.scale(loss).backward()
        except torch.OutOfMemoryError as error:
            raise MicroBatchTooLarge(self.micro_batch, self.ranks.rank) from error
        return loss.detach()

    def read_back(self) -> None:
        """The pending steps' losses to the host (one sync): checked, logged, shown."""
        rows = self.pending.read_back(self.paths.root)
        if not rows:
            return
        self.step_log.write(row.as_csv() for row in rows)
        self.tracking.log_steps(rows)
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
            "micro_batch": self.micro_batch,
            "validation": self.progress.validation[-1] if self.progress.validation else {},
            **extra,
        }

    def save(self) -> None:
        """Save the training state, the logs flushed first so that they never lag the state.

        The losses are read back first: a state never includes a step with a non-finite loss.
        Only the writing rank saves.
        """
        if not self.ranks.writes:
            return
        self.read_back()
        self.step_log.flush()
        self.validation_log.flush()
        self.tracking.flush()
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
        publish(self.paths, self.keep_optimizer)
        return final


def _due(trainer: Trainer, step: Step, every: int) -> bool:
    """Whether an every-N-steps action is due after ``step``: it always is after the last."""
    return step.number == trainer.settings.steps or step.number % every == 0


def _log_step(trainer: Trainer, step: Step) -> None:
    """The step kept for ``log.csv``, read back every ``log_every`` steps; the bar moved on."""
    if not trainer.ranks.writes:
        return
    trainer.pending.add(step)
    trainer.bar.update(1)
    if _due(trainer, step, trainer.log_every):
        trainer.read_back()


def _save_snapshot(trainer: Trainer, step: Step) -> None:
    """A snapshot after each update the schedule names (the minima of a cyclic rate)."""
    if step.number - 1 in trainer.snapshot_steps and trainer.ranks.writes:
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
    it raises (a pruned trial) loses nothing; every rank stops with it.
    """
    if not _due(trainer, step, trainer.settings.validate_every):
        return
    if trainer.ranks.writes:
        trainer.read_back()  # a non-finite loss raises before a model trained on it is scored
    _record_validation(trainer)
    stop: BaseException | None = None
    if trainer.ranks.writes:
        _show_validation(trainer, step)
        if trainer.on_validation is not None:
            trainer.save()
            try:
                trainer.on_validation(step.number, trainer.progress.validation[-1])
            except Exception as error:  # noqa: BLE001 (raised below, on every rank)
                stop = error
    if trainer.ranks.any(stop is not None):
        raise stop or StoppedByRankZero(f"{trainer.paths.root}: stopped by rank 0 at {step.number}")


def _show_validation(trainer: Trainer, step: Step) -> None:
    """The logs flushed, and ``curves.png`` drawn while the run goes."""
    trainer.step_log.flush()
    trainer.validation_log.flush()
    if step.number < trainer.settings.steps:  # after the last step, publishing draws them
        write_progress(
            trainer.paths,
            f"running: step {step.number} of {trainer.settings.steps}",
        )


class StoppedByRankZero(RuntimeError):
    """Rank 0's ``on_validation`` stopped the run (e.g. a pruned trial); the others stop too."""


def _save_state(trainer: Trainer, step: Step) -> None:
    """The training state every ``state_every`` steps, after the last, and on SIGTERM (sent to
    any rank: the ranks agree on it here, so that all of them stop after the same step)."""
    trainer.terminate.requested = trainer.ranks.any(trainer.terminate.requested)
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
    """Score the model (rank 0) and record the result in every rank's progress.

    A better score than any before makes the model ``best``; a run of
    ``early_stopping`` validations without one stops the run.
    """
    progress, settings = trainer.progress, trainer.settings
    spec, paths, writes = trainer.spec, trainer.paths, trainer.ranks.writes
    result = None
    if writes:
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
        trainer.validation_log.write([result])
        trainer.tracking.log_validation(result)
        log.info("%s: step %d validation %s", paths.root, progress.step, result)
    result = trainer.ranks.share(result)
    progress.validation.append(result)
    if math.isfinite(result["score"]) and result["score"] > progress.best_score:
        progress.best_score = result["score"]
        progress.best_step = progress.step
        progress.validations_without_gain = 0
        if writes:
            save_checkpoint(
                paths.work / "best.safetensors",
                trainer.model.state_dict(),
                trainer.metadata(best=True),
            )
            save_optimizer(paths.work_optimizer("best"), trainer.optimizer)  # as FissionFusion's
    else:
        progress.validations_without_gain += 1
        if settings.early_stopping and progress.validations_without_gain >= settings.early_stopping:
            progress.stopped_early = True
