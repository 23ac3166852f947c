"""Checkpoints: safetensors weights plus a JSON sidecar describing them.

A checkpoint ``model.safetensors`` always comes with ``model.json``. The
weights file carries the header marker ``format: lesionsoup-checkpoint/1`` so
that a foreign safetensors file is told apart; the sidecar carries everything
else (see ``CheckpointMetadata``). Both are written through a temporary name
and renamed, the sidecar last, so a checkpoint whose sidecar exists is
complete. Nothing is ever pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from lesionsoup.core.atomic import atomic_path, atomic_write_bytes

FORMAT = "lesionsoup-checkpoint/1"
SUFFIX = ".safetensors"
#: A sidecar's ``start``: whether its run began from a combination's shared initialisation or
#: independently, from the pretrained encoder with a decoder and head drawn from its seed.
SHARED, INDEPENDENT = "shared", "independent"
#: The ``role`` of a warm-up's published checkpoint, the shared initialisation.
SHARED_INITIALISATION = "shared-initialisation"
#: The ``role`` of the model every independent run begins from, as far as they share it: the
#: pretrained encoder (``merging.anchored.pretrained_start``), anchor of encoder soups.
PRETRAINED_START = "pretrained-start"

StateDict = dict[str, torch.Tensor]


class CheckpointMetadata(TypedDict, total=False):
    """The documented sidecar keys; a sidecar may hold more."""

    architecture: dict[str, Any]  # arch, encoder, classes, activation, ...: what builds the model
    hyperparameters: dict[str, Any]  # the TrainSettings: lr, batch_size, schedule, ...
    parent: str  # id or path of the shared initialisation this model started from
    init_id: str  # stable identifier of that initialisation (``state_digest`` of it)
    step: int  # optimiser steps taken
    samples_seen: int
    wall_seconds: float  # training wall-clock time of this checkpoint
    device_seconds: float  # accelerator time of this checkpoint
    precision: str  # arithmetic it was trained in: bf16, fp16 (loss-scaled) or fp32
    validation: dict[str, float]  # held-out scores
    # merged models only
    ingredients: list[str]  # paths of every ingredient considered
    weights: dict[str, float]  # ingredient path -> weight in the final average (0: rejected)
    rule: str  # uniform, greedy, UoU, UoG, GoU, GoG, swa
    selection_trace: list[dict[str, Any]]
    bn_policy: str  # average, recompute, copy-best
    compute_seconds: float  # summed training time of the ingredients
    merge_seconds: float
    selection_seconds: float


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class TensorSpec:
    """Name-independent description of one stored tensor."""

    dtype: str
    shape: tuple[int, ...]


def start_of(metadata: Mapping[str, Any]) -> str:
    """``SHARED`` or ``INDEPENDENT``: how the run that made a checkpoint began (sidecars from
    before ``start`` was recorded started from a shared initialisation, whose ``init_id``
    they carry)."""
    if metadata.get("role") == SHARED_INITIALISATION:
        return SHARED
    return metadata.get("start", SHARED if "init_id" in metadata else INDEPENDENT)


def sidecar_path(path: Path) -> Path:
    """The JSON sidecar of a ``.safetensors`` checkpoint."""
    return Path(path).with_suffix(".json")


def state_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the names, dtypes, shapes and bytes: a stable id for ``init_id``."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _storable(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Detached, contiguous CPU tensors, each with its own storage (safetensors needs both)."""
    storages: set[int] = set()
    tensors: StateDict = {}
    for name, value in state_dict.items():
        tensor = value.detach().cpu().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in storages:
            tensor = tensor.clone()
        storages.add(tensor.untyped_storage().data_ptr())
        tensors[name] = tensor
    return tensors


def _sidecar_text(path: Path, metadata: Mapping[str, Any]) -> str:
    try:
        return json.dumps(dict(metadata), indent=2, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: metadata is not JSON-serialisable: {error}") from error


def save_checkpoint(
    path: Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> None:
    """Write ``path`` (weights) and its sidecar (metadata), each atomically, sidecar last."""
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"{path}: a checkpoint file must end in {SUFFIX}")
    sidecar = _sidecar_text(path, metadata)
    with atomic_path(path) as tmp:
        try:
            save_file(_storable(state_dict), tmp, metadata={"format": FORMAT})
        except SafetensorError as error:  # its I/O errors: atomic_path names the file
            raise OSError(f"safetensors: {error}") from error
    atomic_write_bytes(sidecar_path(path), sidecar.encode())


def relabel_checkpoint(source: Path, destination: Path, metadata: Mapping[str, Any]) -> None:
    """``source``'s weights under a new name with new metadata, stored once.

    The weights file is hard-linked where the file system allows (it holds no
    metadata of its own besides the format marker), else copied.
    """
    _check_weights_file(Path(source))
    with atomic_path(Path(destination)) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    atomic_write_bytes(sidecar_path(destination), _sidecar_text(destination, metadata).encode())


def copy_checkpoint(source: Path, destination: Path) -> None:
    """Copy a checkpoint's two files byte for byte, each atomically, sidecar last."""
    for origin, target in (
        (source, destination),
        (sidecar_path(source), sidecar_path(destination)),
    ):
        with atomic_path(Path(target)) as tmp:
            shutil.copyfile(origin, tmp)


def _check_weights_file(path: Path) -> None:
    """Raise ``CheckpointError`` unless ``path`` is a readable lesionsoup safetensors file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(path, framework="pt") as handle:
            marker = (handle.metadata() or {}).get("format")
    except SafetensorError as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    if marker != FORMAT:
        raise CheckpointError(
            f"{path}: not a lesionsoup checkpoint (header format {marker!r}, expected {FORMAT!r})"
        )


def tensor_specs(path: Path) -> dict[str, TensorSpec]:
    """Names, dtypes and shapes of the stored tensors, read from the header only."""
    path = Path(path)
    _check_weights_file(path)
    with safe_open(path, framework="pt") as handle:
        specs = {}
        for name in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
            view = handle.get_slice(name)
            specs[name] = TensorSpec(dtype=view.get_dtype(), shape=tuple(view.get_shape()))
    return specs


def load_metadata(path: Path) -> dict[str, Any]:
    """The sidecar of the checkpoint ``path`` (whose weights header is checked too)."""
    path = Path(path)
    _check_weights_file(path)
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise CheckpointError(f"{sidecar}: metadata sidecar of {path} is missing")
    try:
        metadata = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{sidecar}: corrupt metadata sidecar ({error})") from error
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{sidecar}: metadata sidecar must hold a JSON object")
    return metadata


def load_state_dict(path: Path, device: str | torch.device = "cpu") -> StateDict:
    """The tensors of a checkpoint, without its metadata."""
    path = Path(path)
    _check_weights_file(path)
    try:
        return load_file(path, device=str(device))
    except SafetensorError as error:
        raise CheckpointError(f"{path}: corrupt tensor data ({error})") from error


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu"
) -> tuple[StateDict, dict[str, Any]]:
    """The tensors and the metadata of a checkpoint."""
    metadata = load_metadata(path)
    return load_state_dict(path, device), metadata
