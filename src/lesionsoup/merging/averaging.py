"""Weight-space averaging of checkpoint files: the arithmetic every soup and SWA shares.

A soup is a weighted average of compatible checkpoints (same architecture,
training resolution, tensors and shared initialisation), and records the
architecture and resolution they share, so that it is predicted and exported
like any trained checkpoint. Every soup, including a soup of soups, is
represented by its flat weights over the original checkpoint files, and is
built by streaming those files one at a time: floating-point tensors are
summed in float64 and cast back, so peak memory stays near three models
whatever the number of ingredients. Non-floating tensors (BatchNorm's
``num_batches_tracked``) are never averaged: the merged model keeps their
elementwise maximum over the ingredients (for SWA snapshots, the latest).
What then happens to BatchNorm statistics is ``lesionsoup.merging.batchnorm``'s.

Each ingredient's start (``ingredient_start``) is ``shared:<init_id>`` when its
sidecar records the shared initialisation it started from, or ``independent``
when its run declares ``"start": "independent"`` (started from the pretrained
encoder alone, no ``init_id``). The ingredients of one soup may mix the two,
the comparison of the reference paper, but not two shared initialisations (a
study has one per combination, so two mean a mistake); a sidecar that records
neither is refused, since its start cannot be verified.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from lesionsoup.core.checkpoint import (
    INDEPENDENT,
    CheckpointError,
    StateDict,
    load_metadata,
    tensor_specs,
)
from lesionsoup.inference.predictor import INFERENCE_FIELDS, IncompatibleModels, agreed_fields

#: A soup: each ingredient file's weight in the average.
Weights = dict[Path, float]


def check_compatible(paths: Sequence[Path]) -> dict[Path, dict[str, Any]]:
    """The metadata of each checkpoint, once all are known to be averageable together."""
    if not paths:
        raise ValueError("no ingredients to merge")
    reference, *others = map(Path, paths)
    metadata = {path: load_metadata(path) for path in (reference, *others)}
    agreed_fields(metadata, INFERENCE_FIELDS)
    shared = {
        path: meta for path, meta in metadata.items() if ingredient_start(path, meta) != INDEPENDENT
    }
    if shared:
        agreed_fields(shared, ["init_id"])
    specs = tensor_specs(reference)
    for other in others:
        difference = _spec_difference(specs, tensor_specs(other))
        if difference:
            raise IncompatibleModels(f"{other} and {reference} differ: {difference}")
    return metadata


def ingredient_start(path: Path, metadata: Mapping[str, Any]) -> str:
    """``shared:<init_id>``, or ``independent`` for a run that declares it started alone."""
    if metadata.get("init_id") is not None:
        return f"shared:{metadata['init_id']}"
    if metadata.get("start") == INDEPENDENT:
        return INDEPENDENT
    raise IncompatibleModels(
        f"{path}: no init_id, so a shared initialisation cannot be verified "
        f"(and no 'start': {INDEPENDENT!r})"
    )


def _spec_difference(expected: Mapping[str, Any], found: Mapping[str, Any]) -> str:
    """A short description of how two tensor listings differ ('' when equal)."""
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    changed = [
        f"{name} {expected[name]} vs {found[name]}"
        for name in expected
        if name in found and expected[name] != found[name]
    ]
    parts = [
        f"{label} {names[:5]}{' ...' if len(names) > 5 else ''}"
        for label, names in (("missing", missing), ("unexpected", extra), ("changed", changed))
        if names
    ]
    return "; ".join(parts)


def read_tensors(
    path: Path, keep: Callable[[str], bool] = lambda _: True
) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors of one file, one at a time, the file open only while iterating."""
    try:
        with safe_open(path, framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                if keep(name):
                    yield name, handle.get_tensor(name)
    except SafetensorError as error:
        raise CheckpointError(f"{path}: corrupt tensor data ({error})") from error


class _WeightedSum:
    """A running weighted sum of state dicts, floats in float64, other tensors by maximum."""

    def __init__(self) -> None:
        self._totals: StateDict = {}
        self._dtypes: dict[str, torch.dtype] = {}
        self._count = 0

    def add(self, tensors: Iterable[tuple[str, torch.Tensor]], weight: float) -> None:
        seen = 0
        for name, tensor in tensors:
            total = self._totals.get(name)
            if total is None:
                if self._count:
                    raise ValueError(f"tensor {name!r} is not in the first state dict")
                self._dtypes[name] = tensor.dtype
                self._totals[name] = (
                    tensor.to(torch.float64, copy=True).mul_(weight)
                    if tensor.is_floating_point()
                    else tensor.clone()
                )
            elif tensor.is_floating_point():
                total.add_(tensor, alpha=weight)
            else:
                self._totals[name] = total.maximum(tensor)
            seen += 1
        if self._count and seen != len(self._totals):
            raise ValueError("state dicts have different tensors")
        self._count += 1

    def result(self) -> StateDict:
        """The sum, cast back to the original dtypes (the running sum is consumed)."""
        return {name: self._totals.pop(name).to(self._dtypes[name]) for name in list(self._totals)}


def _normalised(weights: Sequence[float]) -> list[float]:
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero: {list(weights)}")
    total = sum(weights)
    return [w / total for w in weights]


def average_checkpoints(
    paths: Sequence[Path],
    weights: Sequence[float] | None = None,
    keep: Callable[[str], bool] = lambda _: True,
) -> StateDict:
    """The weighted average (weights normalised to sum 1; default equal) of checkpoint files,
    of the tensors whose names ``keep`` accepts (default all).

    Files are checked for compatibility from their headers and sidecars, then
    read one at a time.
    """
    paths = [Path(p) for p in paths]
    check_compatible(paths)
    if weights is None:
        weights = [1.0] * len(paths)
    if len(weights) != len(paths):
        raise ValueError(f"{len(weights)} weights for {len(paths)} checkpoints")
    total = _WeightedSum()
    for path, weight in zip(paths, _normalised(weights), strict=True):
        total.add(read_tensors(path, keep), weight)
    return total.result()
