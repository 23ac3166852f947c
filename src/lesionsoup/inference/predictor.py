"""Any model reference as one predictor: a checkpoint, or an ensemble of checkpoints.

A model reference is either a checkpoint ``.safetensors`` (with its JSON
sidecar, see ``lesionsoup.core.checkpoint``) or an ensemble file, JSON::

    {"kind": "ensemble", "members": ["a.safetensors", "/abs/b.safetensors"],
     "weights": [1, 2], ...any further metadata}

Member paths are relative to the ensemble file's folder, or absolute;
``weights`` is optional (uniform by default) and normalised to sum 1. An
ensemble averages its members' probabilities, not their logits, so members
may even differ in head (sigmoid or softmax); they must predict the same lesions.

Every member is loaded once, onto the predictor's device, and stays there:
memory grows with the number of members (a ResNet-101 U-Net holds about
0.2 GB of float32 weights).

What a model needs besides its weights (``INFERENCE_FIELDS``) is its
architecture, lesion classes and head included, and the resolution it was
trained at. A soup's ingredients, and the candidates the merge stage makes an
ensemble of, must agree on both (``agreed_fields``), which the merged model
or ensemble file then records. The input normalisation is not among them: it
is fixed in code, ImageNet mean and standard deviation
(``lesionsoup.training.sampling.to_tensors``), for training and inference alike.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.checkpoint import (
    SUFFIX,
    CheckpointError,
    load_checkpoint,
    load_metadata,
    sidecar_path,
)
from lesionsoup.core.lesions import Lesion
from lesionsoup.core.model import ModelSpec, build_model, load_weights
from lesionsoup.inference.infer import DEFAULT_SETTINGS, InferenceSettings, infer, predict_whole

ENSEMBLE_KIND = "ensemble"
_ENSEMBLE_KEYS = ("kind", "members", "weights")
#: Metadata key of the training resolution (the cache size) in sidecars and model files.
CACHE_SIZE_KEY = "cache_size"
#: What predicting with a model needs from its metadata: how to build it (lesions and head
#: included) and the resolution to preprocess photographs at.
INFERENCE_FIELDS: tuple[str, ...] = ("architecture", CACHE_SIZE_KEY)


class IncompatibleModels(CheckpointError):
    """Models that cannot be merged or run as one; the message names two files and the field."""


@dataclass(frozen=True)
class Member:
    """One loaded model of a predictor and its share of the average."""

    path: Path
    model: torch.nn.Module
    head: str
    weight: float


class Predictor:
    """Maps a batch of normalised images to per-lesion probabilities (B, L, H, W)."""

    def __init__(self, path: Path, members: Sequence[Member], lesions: tuple[Lesion, ...]) -> None:
        self.path = Path(path)
        self.members = tuple(members)
        self.lesions = lesions

    @property
    def device(self) -> torch.device:
        return next(self.members[0].model.parameters()).device

    def forward(self, images: torch.Tensor, precision: str = "auto") -> torch.Tensor:
        """Weighted mean of the members' probabilities; image sides must be multiples of 32."""
        total: torch.Tensor | None = None
        for member in self.members:
            probs = predict_whole(member.model, images, member.head, precision) * member.weight
            total = probs if total is None else total.add_(probs)
        return total

    def predict(
        self,
        images: torch.Tensor,
        settings: InferenceSettings = DEFAULT_SETTINGS,
        fov: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """Probabilities of images of any size; see ``lesionsoup.inference.infer.infer``."""
        return infer(partial(self.forward, precision=settings.precision), images, settings, fov)


def spec_of(path: Path, metadata: Mapping[str, Any]) -> ModelSpec:
    """The architecture a checkpoint's sidecar records, to build the model its weights fill.

    Pretrained encoder weights are dropped from the spec: the stored weights
    replace them, so building the model never downloads anything.
    """
    try:
        spec = ModelSpec.from_dict(dict(metadata["architecture"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{sidecar_path(path)}: no usable 'architecture' ({type(error).__name__}: {error})"
        ) from None
    return dataclasses.replace(spec, encoder_weights=None)


def agreed_fields(
    metadata: Mapping[Path, Mapping[str, Any]], fields: Sequence[str] = INFERENCE_FIELDS
) -> dict[str, Any]:
    """The value of each field that every model's metadata records alike.

    A soup's ingredients and an ensemble's members become one model, which can
    record only one architecture and one resolution: a field that two models
    record differently, or that one records and another lacks, is refused,
    naming both files. A field that none records is left out.
    """
    (reference, expected), *others = metadata.items()
    for path, found in others:
        for key in fields:
            if found.get(key) != expected.get(key):
                raise IncompatibleModels(
                    f"{path} and {reference} differ in {key}: "
                    f"{found.get(key)!r} vs {expected.get(key)!r}"
                )
    return {key: expected[key] for key in fields if key in expected}


def member_of(
    path: Path, state: Mapping[str, torch.Tensor], spec: ModelSpec, device: torch.device
) -> Member:
    """A model of ``spec`` holding ``state`` (named ``path``), ready to predict on ``device``."""
    model = build_model(spec)
    try:
        load_weights(model, state)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit its architecture ({error})") from None
    model.to(device).eval()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return Member(path, model, spec.head, 1.0)


def _load_member(path: Path, device: torch.device, weight: float) -> tuple[Member, ModelSpec]:
    state, metadata = load_checkpoint(path, device)
    spec = spec_of(path, metadata)
    return dataclasses.replace(member_of(path, state, spec, device), weight=weight), spec


def _check_same_lesions(specs: Mapping[Path, ModelSpec], source: Path) -> tuple[Lesion, ...]:
    (first, first_spec), *others = specs.items()
    for path, spec in others:
        if spec.lesion_classes != first_spec.lesion_classes:
            raise CheckpointError(
                f"{source}: members predict different lesions: {first} "
                f"{list(first_spec.lesions)}, {path} {list(spec.lesions)}"
            )
    return first_spec.lesion_classes


def _normalised_weights(weights: Any, count: int, source: Path) -> list[float]:
    if weights is None:
        return [1 / count] * count
    if (
        not isinstance(weights, list)
        or len(weights) != count
        or not all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights)
        or any(not np.isfinite(w) or w < 0 for w in weights)
        or sum(weights) <= 0
    ):
        raise CheckpointError(
            f"{source}: 'weights' must be {count} finite non-negative numbers with a positive "
            f"sum, one per member, not {weights!r}"
        )
    total = float(sum(weights))
    return [w / total for w in weights]


def read_ensemble(path: Path) -> tuple[list[Path], list[float], dict[str, Any]]:
    """Member paths (resolved against the file's folder), normalised weights, and the whole file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not a readable ensemble JSON file ({error})") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind != ENSEMBLE_KIND:
        hint = ""
        if isinstance(data, dict) and "architecture" in data:
            hint = f" (this looks like a checkpoint sidecar: pass {path.with_suffix(SUFFIX)})"
        message = f"{path}: unknown model file kind {kind!r}, expected {ENSEMBLE_KIND!r}{hint}"
        raise CheckpointError(message)
    members = data.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise CheckpointError(f"{path}: 'members' must be a non-empty list of checkpoint paths")
    paths = [path.parent / member for member in members]
    return paths, _normalised_weights(data.get("weights"), len(paths), path), data


def load_predictor(path: Path, device: str | torch.device = "cpu") -> Predictor:
    """A checkpoint or an ensemble file as a predictor on ``device``."""
    path, device = Path(path), torch.device(device)
    if not path.is_file():
        raise CheckpointError(f"{path}: model file not found")
    if path.suffix == SUFFIX:
        member, spec = _load_member(path, device, 1.0)
        return Predictor(path, [member], spec.lesion_classes)
    if path.suffix != ".json":
        raise CheckpointError(
            f"{path}: not a model file (expected a {SUFFIX} checkpoint or a .json ensemble)"
        )
    paths, weights, _ = read_ensemble(path)
    for member_path in paths:
        if member_path.suffix != SUFFIX:
            raise CheckpointError(f"{path}: member {member_path} is not a {SUFFIX} checkpoint")
    # check every sidecar before loading any weights
    _check_same_lesions({p: spec_of(p, load_metadata(p)) for p in paths}, path)
    loaded = [_load_member(p, device, w) for p, w in zip(paths, weights, strict=True)]
    members = [member for member, _ in loaded]
    return Predictor(path, members, loaded[0][1].lesion_classes)


def write_ensemble(
    path: Path,
    members: Sequence[Path],
    metadata: Mapping[str, Any] | None = None,
    weights: Sequence[float] | None = None,
) -> None:
    """Write an ensemble file atomically; member paths are stored relative to its folder.

    Every member must be a readable checkpoint, and all must predict the same lesions.
    """
    path = Path(path)
    if path.suffix != ".json":
        raise ValueError(f"{path}: an ensemble file must end in .json")
    metadata = dict(metadata or {})
    clashes = sorted(set(metadata) & set(_ENSEMBLE_KEYS))
    if clashes:
        raise ValueError(f"{path}: metadata may not set {clashes}")
    if not members:
        raise ValueError(f"{path}: an ensemble needs at least one member")
    members = [Path(member) for member in members]
    _check_same_lesions({m: spec_of(m, load_metadata(m)) for m in members}, path)
    content: dict[str, Any] = {
        "kind": ENSEMBLE_KIND,
        "members": [os.path.relpath(m.resolve(), path.parent.resolve()) for m in members],
    }
    if weights is not None:
        content["weights"] = [float(w) for w in weights]
        _normalised_weights(content["weights"], len(members), path)
    try:
        text = json.dumps({**content, **metadata}, indent=2)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: metadata is not JSON-serialisable: {error}") from error
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode())
