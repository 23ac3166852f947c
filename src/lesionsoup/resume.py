"""The resumable state of a training run: weights, optimiser, RNG and progress.

Tensors go to a safetensors file, everything else to JSON; both are written
through temporary names and the JSON last, so a state whose JSON exists is
complete. No pickle: the optimiser state is flattened into named tensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lesionsoup.cache import atomic_write_bytes

_MODEL = "model."
_OPTIM = "optim."


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
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {_MODEL + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    weights = directory / "state.safetensors"
    tmp = weights.with_name(".state.safetensors.tmp")
    save_file(tensors, tmp)
    tmp.replace(weights)
    meta = {"progress": progress.__dict__, "optimizer": optim_meta}
    atomic_write_bytes(directory / "state.json", json.dumps(meta).encode())


def load_state(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> Progress | None:
    """Restore model, optimiser and RNG in place; None when there is no saved state."""
    meta_file = directory / "state.json"
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    tensors = load_file(directory / "state.safetensors")
    model.load_state_dict({k[len(_MODEL) :]: v for k, v in tensors.items() if k.startswith(_MODEL)})
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    torch.set_rng_state(tensors["rng.torch"])
    return Progress(**meta["progress"])
