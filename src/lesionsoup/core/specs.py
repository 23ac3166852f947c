"""The serialisable specifications of a model and of a training run.

Both travel as JSON: in ``params:`` of the workflow (so a changed value reruns
exactly what depends on it) and in every checkpoint's sidecar (so a checkpoint
can be rebuilt without the config that made it). This module imports no torch,
so that planning a workflow stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from lesionsoup.core.lesions import TRAINED, Lesion, parse_lesions
from lesionsoup.core.metrics import DEFAULT_BINS
from lesionsoup.core.schedules import Schedule


@dataclass(frozen=True)
class ModelSpec:
    encoder: str = "resnet101"
    encoder_weights: str | None = "imagenet"
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    lesions: tuple[str, ...] = field(default_factory=lambda: tuple(x.value for x in TRAINED))
    head: Literal["sigmoid", "softmax"] = "sigmoid"

    def __post_init__(self) -> None:
        parse_lesions(self.lesions)
        if len(self.decoder_channels) != self.encoder_depth:
            raise ValueError(
                f"decoder_channels {list(self.decoder_channels)} needs one entry per encoder "
                f"stage (encoder_depth={self.encoder_depth})"
            )
        if self.head not in ("sigmoid", "softmax"):
            raise ValueError(f"head must be sigmoid or softmax, not {self.head!r}")

    @property
    def lesion_classes(self) -> tuple[Lesion, ...]:
        return parse_lesions(self.lesions)

    @property
    def out_channels(self) -> int:
        """One channel per lesion; the softmax head adds a background channel first."""
        return len(self.lesions) + (1 if self.head == "softmax" else 0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "arch": "unet"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        fields = {key: value for key, value in data.items() if key != "arch"}
        for key in ("decoder_channels", "lesions"):
            if key in fields:
                fields[key] = tuple(fields[key])
        return cls(**fields)


#: The validation scores a run may monitor (``TrainSettings.monitor``).
MONITORS: tuple[str, ...] = ("ap", "miou")


@dataclass(frozen=True)
class TrainSettings:
    """Everything a run's result depends on besides data, model and initialisation."""

    steps: int = 1000
    #: Training length in epochs instead of ``steps`` (0: use ``steps``). An epoch is one patch
    #: per training image of the combination, as the paper's authors count it; ``in_steps``
    #: turns it into steps once the training images are known.
    epochs: int = 0
    #: Patches of one step on each device (the global batch is ``batch_size × devices``).
    batch_size: int = 8
    #: Processes (one per GPU, or CPU processes under gloo) that train one run together
    #: (distributed data parallel, ``lesionsoup.training.distributed``).
    devices: int = 1
    #: BatchNorm statistics over every device's patches (SyncBatchNorm); used when ``devices > 1``.
    sync_batchnorm: bool = True
    patch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr: float = 0.0
    start_lr: float = 0.0
    cycle_steps: int = 0
    cycle_epochs: int = 0  # ``cycle_steps`` in epochs (0: use ``cycle_steps``)
    cyclic: bool = False
    grad_clip: float = 1.0
    dice_weight: float = 1.0
    bce_weight: float = 1.0
    dice_smooth: float = 1.0
    dice_background: bool = False
    dice_absent: str = "keep"
    lesion_fraction: float = 0.5
    mixing: str = "proportional"
    augmentation: str | dict = "medium"
    validate_every: int = 250
    validate_every_epochs: int = 0  # validation interval in epochs (0: ``validate_every``)
    #: The validation score that picks ``best`` and drives early stopping: ``ap`` (mean pooled
    #: average precision over the lesions) or ``miou`` (mean IoU of the argmax over background and
    #: lesions, softmax head only: the authors' val_mIoU).
    monitor: Literal["ap", "miou"] = "ap"
    state_every: int = 100
    early_stopping: int = 0
    freeze_encoder: bool = False
    seed: int = 0
    compile: bool = False
    bins: int = DEFAULT_BINS

    def __post_init__(self) -> None:
        if self.devices < 1 or self.batch_size < 1:
            raise ValueError(
                f"devices and batch_size must be at least 1, not {self.devices} and "
                f"{self.batch_size}"
            )
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {list(MONITORS)}, not {self.monitor!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def steps_per_epoch(self, train_images: int) -> int:
        """Steps of one epoch: one patch per training image, the images split evenly over the
        devices (as a distributed sampler pads them), the last batch possibly short."""
        if train_images < 1:
            raise ValueError("an epoch needs at least one training image")
        return math.ceil(math.ceil(train_images / self.devices) / self.batch_size)

    def in_steps(self, train_images: int) -> TrainSettings:
        """These settings with the lengths given in epochs (``epochs``, ``validate_every_epochs``,
        ``cycle_epochs``) turned into steps."""
        per_epoch = self.steps_per_epoch(train_images)
        in_epochs = {
            "steps": self.epochs,
            "validate_every": self.validate_every_epochs,
            "cycle_steps": self.cycle_epochs,
        }
        changes = {field: epochs * per_epoch for field, epochs in in_epochs.items() if epochs}
        return dataclasses.replace(self, **changes)

    @property
    def lr_schedule(self) -> Schedule:
        return Schedule(
            kind=self.schedule,  # type: ignore[arg-type]
            lr=self.lr,
            steps=self.steps,
            warmup_steps=self.warmup_steps,
            min_lr=self.min_lr,
            start_lr=self.start_lr,
            cycle_steps=self.cycle_steps,
            cyclic=self.cyclic,
        )
