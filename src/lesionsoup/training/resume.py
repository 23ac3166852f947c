"""The resumable state of a training run: weights, optimiser, RNG and progress.

One safetensors file holds it all: the tensors, and the progress, optimiser
and gradient-scaler scalars as JSON in its header. It is written under a temporary name and
published by one rename, so a kill at any instant leaves the previous state
or the new one, never weights of one step with the progress of another. No
pickle: the optimiser state is flattened into named tensors.

An optimiser state alone (``save_optimizer``, ``load_optimizer``) is stored
the same way: what a base run publishes beside its ``best`` checkpoint so
that an FGG continuation carries its AdamW moments over.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lesionsoup.core.atomic import atomic_path

STATE_FILE = "state.safetensors"
_MODEL = "model."
_OPTIM = "optim."
_HEADER = "lesionsoup-state"
_OPTIMIZER_HEADER = "lesionsoup-optimizer"


class CorruptState(ValueError):
    """A saved state that cannot be read back; the message names the file."""


@dataclass
class Progress:
    """Scalars of a run that must survive a restart."""

    step: int = 0
    samples_seen: int = 0
    wall_seconds: float = 0.0
    best_score: float = float("-inf")
    best_step: int = -1
    validations_without_gain: int = 0
    stopped_early: bool = False
    validation: list[dict[str, Any]] = field(default_factory=list)
    #: ``torch.amp.GradScaler.state_dict()`` (loss scale, growth tracker) of fp16 training;
    #: empty when no scaler is in use. Part of the state, so an fp16 run resumes exactly.
    scaler: dict[str, Any] = field(default_factory=dict)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPTIM}{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith(_OPTIM):
            index, name = key[len(_OPTIM) :].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    for index, slots in meta["scalars"].items():
        state.setdefault(int(index), {}).update(slots)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_state(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
) -> None:
    """Write ``directory/state.safetensors`` in one atomic step."""
    tensors = {_MODEL + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    header = {"progress": progress.__dict__, "optimizer": optim_meta}
    with atomic_path(directory / STATE_FILE) as tmp:
        save_file(tensors, tmp, metadata={_HEADER: json.dumps(header)})


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        with safe_open(path, framework="pt") as handle:
            header = json.loads((handle.metadata() or {})[_HEADER])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        return tensors, {**header, "progress": Progress(**header["progress"])}
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise CorruptState(f"{path}: unreadable training state ({error})") from error


def load_state(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> Progress | None:
    """Restore model, optimiser and RNG in place; None when there is no saved state.

    Raises ``CorruptState`` (before touching the model) when the file cannot be read.
    """
    path = directory / STATE_FILE
    if not path.exists():
        return None
    tensors, header = _read(path)
    try:
        model.load_state_dict(
            {k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)}
        )
        optimizer.load_state_dict(_unflatten_optimizer(tensors, header["optimizer"]))
        torch.set_rng_state(tensors["rng.torch"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CorruptState(f"{path}: does not fit the model being trained ({error})") from error
    return header["progress"]


def save_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Write an optimiser's state (moments, step counts, groups) to ``path`` atomically."""
    tensors, meta = _flatten_optimizer(optimizer.state_dict())
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, tmp, metadata={_OPTIMIZER_HEADER: json.dumps(meta)})


def _check_fits(
    path: Path, tensors: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer
) -> None:
    """Every saved per-parameter tensor has its parameter's shape (torch checks counts only)."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    for key, value in tensors.items():
        index = int(key[len(_OPTIM) :].split(".", 1)[0])
        if index >= len(parameters):
            raise ValueError(f"{path}: optimiser state for parameter {index} of {len(parameters)}")
        if value.dim() and value.shape != parameters[index].shape:
            raise ValueError(
                f"{path}: {key} has shape {tuple(value.shape)}, its parameter "
                f"{tuple(parameters[index].shape)}: the state of another model"
            )


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> None:
    """Restore an optimiser's state written by ``save_optimizer``, in place.

    Raises ``ValueError`` naming the file when it cannot be read or belongs to other parameters.
    """
    path = Path(path)
    try:
        with safe_open(path, framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})[_OPTIMIZER_HEADER])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable optimiser state ({error})") from error
    _check_fits(path, tensors, optimizer)
    try:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta))
    except (RuntimeError, ValueError, KeyError) as error:
        raise ValueError(f"{path}: does not fit the optimiser ({error})") from error
