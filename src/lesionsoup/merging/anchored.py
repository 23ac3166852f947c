"""Merges relative to a common start: Model Stock and TIES-merging, on state dicts.

Both see each fine-tuned model ``w_i`` as its update ``w_i - w0`` from an anchor
``w0``, the ingredients' common start (their shared initialisation, or the pretrained start).

``model_stock`` (Jang et al., ECCV 2024, arXiv 2403.19522), per tensor: with
``cos`` the mean cosine over every pair of the k updates, ``t = k cos / (1 + (k - 1) cos)``
and the merged tensor ``t w_avg + (1 - t) w0``. The paper assumes equal pairwise angles
and, for k > 2, takes their average; here the mean of the pairwise cosines. ``cos`` is
clamped to ``[0, 1]`` so that ``t`` stays in ``[0, 1]``: the merged tensor is then on the
segment from the anchor to the average, where the paper's geometry puts it; a negative
mean cosine (updates that cancel) would give a negative ``t``, or a pole at
``cos = -1 / (k - 1)``, so it keeps the anchor (``t = 0``). A pair with a zero update
counts as orthogonal (cosine 0: no direction to share); all updates zero give the anchor.

``ties`` (Yadav et al., NeurIPS 2023, arXiv 2306.01708): trim each update ``tau_i`` to
the fraction ``keep`` of its largest magnitudes, over the whole model as the paper's code
does (one threshold per model, across every merged tensor; values tied with the
threshold are kept), elect each parameter's sign as the sign of the sum of the trimmed
values, average the trimmed values that agree with it (0 where none do, or where the sum
is 0), and return ``w0 + scale * tau_merged``.

Only floating tensors outside BatchNorm's running statistics are merged (those ``merged``
accepts). The rest are no updates: floating statistics are averaged over the fine-tuned
models, as the ``average`` BatchNorm policy keeps them, and integer buffers take their
maximum, as ``averaging`` does; a soup's BatchNorm policy then sets the statistics.

As soup rules (``model_stock``, ``ties``), the anchor is the ingredients' common start, one
of two (``check_anchor``; the planner picks it, ``plan.ingredients.soup_anchor``):

- the shared initialisation (a frozen-encoder warm-up) of runs that all start ``shared``,
  found by following each sidecar's ``parent`` (``common_start``); a given anchor must be
  that file;
- for an ENCODER soup of runs that all start ``independent``, the pretrained start
  (``pretrained_start``, role ``pretrained-start``): the model ``build_model`` makes from the
  spec and the pretrained encoder weights, as every independent run began. Only its encoder
  is what the runs began from (their decoders and heads were drawn from their seeds; the
  start's are seed 0's and unused): the soup merges the encoder's updates from it and takes
  the rest from the part soup's anchor ingredient. Every ingredient must record
  ``start: independent`` and the anchor's encoder and encoder weights.

A decoder or full soup of independent runs, an encoder soup of runs without pretrained
weights (``model.encoder_weights: null``: each drew its own), and mixed starts have no
common start: they are refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from lesionsoup.core.checkpoint import (
    INDEPENDENT,
    PRETRAINED_START,
    SHARED_INITIALISATION,
    StateDict,
    load_metadata,
    start_of,
)
from lesionsoup.core.merge_rules import DEFAULT_KEEP
from lesionsoup.core.specs import ModelSpec
from lesionsoup.merging.batchnorm import is_bn_statistic

#: TIES' scale of the merged update, lambda, by default.
DEFAULT_SCALE = 1.0


def _always(_: str) -> bool:
    return True


def _check(anchor: StateDict, finetuned: Sequence[StateDict]) -> None:
    """Refuse no models, or models whose tensors differ from the anchor's."""
    if not finetuned:
        raise ValueError("no fine-tuned models to merge")
    for index, state in enumerate(finetuned):
        if state.keys() != anchor.keys():
            raise ValueError(f"fine-tuned model {index} has other tensors than the anchor")
        for name, tensor in state.items():
            if tensor.shape != anchor[name].shape:
                shapes = f"{tuple(tensor.shape)} vs {tuple(anchor[name].shape)}"
                raise ValueError(f"tensor {name!r} of fine-tuned model {index}: {shapes}")


def is_update(name: str, tensor: torch.Tensor) -> bool:
    """Whether a tensor is a weight whose updates are merged (not statistics or counters)."""
    return tensor.is_floating_point() and not is_bn_statistic(name)


def _not_merged(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """A tensor that is no update: the models' mean when floating, else their maximum."""
    if tensors[0].is_floating_point():
        mean = torch.stack([t.to(torch.float64) for t in tensors]).mean(0)
        return mean.to(tensors[0].dtype)
    return torch.stack(list(tensors)).amax(0)


def _updates(anchor: torch.Tensor, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The k updates of one tensor, flattened to rows, in float64."""
    base = anchor.to(torch.float64).flatten()
    return torch.stack([t.to(torch.float64).flatten() - base for t in tensors])


def mean_pairwise_cosine(updates: torch.Tensor) -> float:
    """The mean cosine over the pairs of rows of ``updates`` (a zero row is orthogonal to
    every row); 1 for a single row, which has no pair."""
    k = updates.shape[0]
    if k == 1:
        return 1.0
    norms = updates.norm(dim=1)
    unit = updates / torch.where(norms > 0, norms, 1.0)[:, None]
    cosines = unit @ unit.T
    pairs = torch.triu_indices(k, k, offset=1)
    return float(cosines[pairs[0], pairs[1]].mean())


def stock_ratio(cosine: float, k: int) -> float:
    """Model Stock's ``t = k cos / (1 + (k - 1) cos)``, ``cos`` clamped to ``[0, 1]``."""
    cosine = min(max(cosine, 0.0), 1.0)
    return k * cosine / (1 + (k - 1) * cosine)


def model_stock(
    anchor: StateDict, finetuned: Sequence[StateDict], merged: Callable[[str], bool] = _always
) -> StateDict:
    """Model Stock of ``finetuned`` around ``anchor``, tensor by tensor (module docstring);
    tensors that ``merged`` refuses, or that are no updates, are not merged."""
    _check(anchor, finetuned)
    result: StateDict = {}
    for name, base in anchor.items():
        tensors = [state[name] for state in finetuned]
        if not (merged(name) and is_update(name, base)):
            result[name] = _not_merged(tensors)
            continue
        updates = _updates(base, tensors)
        t = stock_ratio(mean_pairwise_cosine(updates), len(tensors))
        value = base.to(torch.float64).flatten() + t * updates.mean(0)
        result[name] = value.reshape(base.shape).to(base.dtype)
    return result


def trim_threshold(updates: Sequence[torch.Tensor], keep: float) -> float:
    """The magnitude at or above which a model's update values are kept: its
    ``ceil(keep * n)``-th largest over all its ``n`` values (flattened ``updates``)."""
    if not 0 < keep <= 1:
        raise ValueError(f"TIES keeps a fraction in (0, 1], got {keep}")
    magnitudes = torch.cat([u.abs().flatten() for u in updates])
    if magnitudes.numel() == 0:
        return 0.0
    count = max(1, math.ceil(keep * magnitudes.numel() - 1e-9))
    return float(magnitudes.topk(count).values[-1])


def disjoint_merge(trimmed: torch.Tensor) -> torch.Tensor:
    """TIES' elected sign and disjoint mean over the rows of ``trimmed`` (the k trimmed
    updates of one tensor): the mean of the values whose sign is the sign of their sum."""
    elected = torch.sign(trimmed.sum(0))
    agree = (torch.sign(trimmed) == elected) & (trimmed != 0)
    count = agree.sum(0)
    total = torch.where(agree, trimmed, 0.0).sum(0)
    return torch.where(count > 0, total / count.clamp(min=1), 0.0)


def ties(
    anchor: StateDict,
    finetuned: Sequence[StateDict],
    merged: Callable[[str], bool] = _always,
    *,
    keep: float = DEFAULT_KEEP,
    scale: float = DEFAULT_SCALE,
) -> StateDict:
    """TIES-merging of ``finetuned`` around ``anchor`` (module docstring): each model's
    update trimmed over every merged tensor at once, then signs elected per parameter."""
    _check(anchor, finetuned)
    names = [n for n, t in anchor.items() if merged(n) and is_update(n, t)]
    updates = {name: _updates(anchor[name], [s[name] for s in finetuned]) for name in names}
    thresholds = [
        trim_threshold([updates[name][i] for name in names], keep) for i in range(len(finetuned))
    ]
    bounds = torch.tensor(thresholds, dtype=torch.float64)[:, None]
    result: StateDict = {}
    for name, base in anchor.items():
        if name not in updates:
            result[name] = _not_merged([state[name] for state in finetuned])
            continue
        rows = updates.pop(name)
        trimmed = torch.where(rows.abs() >= bounds, rows, 0.0)
        value = base.to(torch.float64).flatten() + scale * disjoint_merge(trimmed)
        result[name] = value.reshape(base.shape).to(base.dtype)
    return result


#: A merge of fine-tuned state dicts around an anchor, of the tensors the filter accepts.
AnchoredMerge = Callable[[StateDict, Sequence[StateDict], Callable[[str], bool]], StateDict]


def anchored_merge(rule: str, keep: float = DEFAULT_KEEP) -> AnchoredMerge:
    """The merge behind an anchored rule of ``core.merge_rules.RULES``; ``keep`` is TIES'."""
    merges: dict[str, AnchoredMerge] = {
        "model_stock": model_stock,
        "ties": partial(ties, keep=keep),
    }
    if rule not in merges:
        raise ValueError(f"{rule!r} is no anchored merge rule; known: {list(merges)}")
    return merges[rule]


def _initialisation_of(path: Path, metadata: Mapping[str, Any]) -> Path:
    """The shared initialisation a checkpoint descends from, by its sidecars' ``parent``s."""
    seen: list[Path] = []
    while metadata.get("role") != SHARED_INITIALISATION:
        if start_of(metadata) == INDEPENDENT or metadata.get("parent") is None or path in seen:
            raise ValueError(f"{path}: started independently, from no shared initialisation")
        seen.append(path)
        path = Path(metadata["parent"])
        metadata = load_metadata(path)
    return path


def common_start(rule: str, metadata: Mapping[Path, Mapping[str, Any]]) -> Path:
    """The shared initialisation every ingredient descends from, the anchor of an anchored
    rule; refused when one started independently, when one records another ``init_id`` than
    the file its parents lead to, or when they lead to different files."""
    starts: dict[Path, Path] = {}
    for path, meta in metadata.items():
        try:
            starts[path] = _initialisation_of(path, meta)
        except ValueError as error:
            raise ValueError(
                f"the {rule} rule merges updates from the ingredients' common start, and they "
                f"have none: {error}"
            ) from None
    for path, init in starts.items():
        found, recorded = load_metadata(init).get("init_id"), metadata[path].get("init_id")
        if recorded not in (None, found):
            raise ValueError(
                f"the {rule} rule's start: {path} records init_id {recorded}, but {init}, the "
                f"initialisation its parents lead to, is {found}"
            )
    if len(set(starts.values())) > 1:
        raise ValueError(f"the {rule} rule needs one start, found {sorted(set(starts.values()))}")
    return next(iter(starts.values()))


#: What an ingredient shares with the pretrained start: the encoder and its weights.
PRETRAINED_FIELDS: tuple[str, ...] = ("encoder", "encoder_weights")
#: The seed of the pretrained start's decoder and head (unused by the merge, but fixed).
PRETRAINED_START_SEED = 0


def pretrained_start(
    spec: ModelSpec, pretrained_cache: Path | None, record: Mapping[str, Any]
) -> tuple[StateDict, dict[str, Any]]:
    """The model every independent run of ``spec`` began from, as far as they share it (the
    pretrained encoder, read from ``pretrained_cache``; decoder and head from seed
    ``PRETRAINED_START_SEED``), and its sidecar: role ``pretrained-start``, the architecture,
    and ``pretrained``, the fetch ``record`` of the weights (``core.pretrained.fetch``)."""
    from lesionsoup.core.model import build_model

    if spec.encoder_weights is None:
        raise ValueError(
            "model.encoder_weights is null: every independent run draws its own encoder, so "
            "they share no pretrained start"
        )
    recorded = (record.get("encoder"), record.get("weights"))
    if recorded != (spec.encoder, spec.encoder_weights):
        raise ValueError(
            f"the fetch record is of {recorded[1]!r} weights of {recorded[0]!r}, the model's "
            f"are {spec.encoder_weights!r} of {spec.encoder!r}"
        )
    torch.manual_seed(PRETRAINED_START_SEED)
    model = build_model(spec, pretrained_cache)
    state = {name: t.detach().clone().contiguous() for name, t in model.state_dict().items()}
    identity = {key: value for key, value in record.items() if key != "cache"}
    metadata = {"role": PRETRAINED_START, "architecture": spec.as_dict(), "pretrained": identity}
    return state, metadata


def _check_pretrained_anchor(
    rule: str,
    anchor: Path,
    recorded: Mapping[str, Any],
    metadata: Mapping[Path, Mapping[str, Any]],
    part: str,
) -> None:
    """Refuse a pretrained start as the anchor of other than an encoder soup of independent
    runs of its encoder and encoder weights."""
    where = f"the {rule} rule's anchor {anchor} is a pretrained start"
    if part != "encoder":
        raise ValueError(
            f"{where}: only the encoder is common to the runs that began from it, and this "
            f"soup averages the {part} (an encoder soup, part encoder, may use it)"
        )
    architecture = recorded.get("architecture", {})
    if architecture.get("encoder_weights") is None:
        raise ValueError(f"{where} without pretrained encoder weights: no common start")
    for path, meta in metadata.items():
        if start_of(meta) != INDEPENDENT:
            raise ValueError(
                f"{where}, but {path} started from a shared initialisation, not from it"
            )
        theirs = meta.get("architecture", {})
        for key in PRETRAINED_FIELDS:
            if theirs.get(key) != architecture.get(key):
                raise ValueError(
                    f"{where} of {key} {architecture.get(key)!r}, but {path} was trained "
                    f"from {key} {theirs.get(key)!r}: not the start it began from"
                )


def check_anchor(
    rule: str, anchor: Path, metadata: Mapping[Path, Mapping[str, Any]], part: str
) -> Path:
    """``anchor`` once it is the ingredients' common start (module docstring): a pretrained
    start for an encoder soup of independent runs of its encoder, else the shared
    initialisation their parents lead to (``common_start``)."""
    anchor = Path(anchor)
    recorded = load_metadata(anchor)
    if recorded.get("role") == PRETRAINED_START:
        _check_pretrained_anchor(rule, anchor, recorded, metadata, part)
        return anchor
    found = common_start(rule, metadata)
    if found.resolve() != anchor.resolve():
        raise ValueError(
            f"the {rule} rule's anchor {anchor} is not the ingredients' common start {found}"
        )
    return anchor
