"""BatchNorm running statistics of a merged model: one of three policies.

Averaging weights does not give the statistics the averaged network would
compute, so each merged model names how its statistics are set:

``average``    averaged like the weights (what model soups and FissionFusion do);
``recompute``  reset and re-estimated in one pass over augmented training
               patches, as ``torch.optim.swa_utils.update_bn`` does over an
               epoch of the training loader (``recompute_bn``, ``batchnorm_recompute``);
``copy-best``  copied from the member with the best individual held-out score.

A part soup (``lesionsoup.merging.parts``) applies its policy to the statistics
of the part it averages (``PolicyInputs.averaged``); the rest keep the anchor's.

The names and each rule's default come from ``lesionsoup.core.merge_rules``;
``POLICY_FUNCTIONS`` maps each name to what it does to an averaged state dict.
Soups (``merging.soups.Merger``) and the connectivity analysis apply them alike.

The recompute patches are drawn as the ingredients were trained: the training
sampler (``PatchSampler.for_training``) and augmentation of the first
ingredient's settings (patch size, lesion fraction, mixing, augmentation; a
grid that varies them recomputes with the first ingredient's) over the
combination's training split. Patch ``i`` depends only on ``(seed, i)``
(``PatchDataset``), so the statistics are reproducible whatever the number of
loader workers. Their number defaults to one epoch-equivalent (``EPOCH``): as
many patches as tile every training image once, ``ceil(S / P) ** 2`` per image
of size ``S`` with patches of size ``P`` (``epoch_patches``), since patch
training has no epochs of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

from lesionsoup.core.checkpoint import StateDict
from lesionsoup.core.merge_rules import BN_POLICIES, EPOCH, BatchNormSample
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.merging.averaging import read_tensors
from lesionsoup.merging.selection import Evaluate
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.sampling import PatchDataset, PatchSampler

#: State-dict entries (last name component) that hold BatchNorm running statistics.
BN_STATISTICS: tuple[str, ...] = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class BatchNormRecompute:
    """What the ``recompute`` policy needs.

    ``batches`` is iterated once per built model, so it must be re-iterable
    (a list or a DataLoader) and should not shuffle, or candidates are scored
    on different statistics.
    """

    make_model: Callable[[], nn.Module]
    batches: Iterable[Any]
    device: str | torch.device = "cpu"
    patches: int | None = None  # how many patches ``batches`` holds, when known


@dataclass(frozen=True)
class PolicyInputs:
    """What a policy may draw on besides the averaged state dict.

    ``evaluate`` scores a soup given as ingredient weights (``copy-best`` ranks
    the members by it, so that selection and policy share one score cache);
    a policy sets only the statistics that ``averaged`` accepts.
    """

    members: Sequence[Path]
    evaluate: Evaluate
    recompute: BatchNormRecompute | None
    averaged: Callable[[str], bool] = lambda _: True


def is_bn_statistic(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in BN_STATISTICS


def _batch_inputs(batch: Any) -> torch.Tensor:
    """The model input of a batch: a tensor, a sequence's first item, or a mapping's "image"."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, list | tuple):
        return batch[0]
    if isinstance(batch, Mapping):
        return batch["image"]
    raise TypeError(f"cannot find the model input in a batch of type {type(batch).__name__}")


@torch.no_grad()
def recompute_bn(
    model: nn.Module, batches: Iterable[Any], device: str | torch.device | None = None
) -> None:
    """Re-estimate every BatchNorm's running statistics over ``batches``, in place.

    Same result as ``torch.optim.swa_utils.update_bn``: statistics reset, then a
    cumulative average (momentum ``None``) over one pass in train mode; momenta
    and the train/eval mode are restored afterwards, even on error. ``model``
    must already be on ``device``; batches are moved there.
    """
    norms = [module for module in model.modules() if isinstance(module, _BatchNorm)]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    try:
        for batch in batches:
            inputs = _batch_inputs(batch)
            model(inputs if device is None else inputs.to(device))
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.train(was_training)


def epoch_patches(caches: Mapping[str, Cache], patch_size: int) -> int:
    """Patches in one epoch-equivalent: ``ceil(S / P) ** 2`` per training image (they tile it)."""
    return sum(
        len(cache.ids_in("train")) * math.ceil(cache.size / patch_size) ** 2
        for cache in caches.values()
    )


def recompute_patches(
    caches: Mapping[str, Cache], spec: ModelSpec, settings: TrainSettings, sample: BatchNormSample
) -> PatchDataset:
    """The augmented training patches of a recompute, drawn as ``settings`` trained."""
    sampler = PatchSampler.for_training(dict(caches), settings, spec.lesion_classes, sample.seed)
    count = (
        epoch_patches(caches, settings.patch_size) if sample.patches == EPOCH else sample.patches
    )
    return PatchDataset(sampler, build_augmentation(settings.augmentation), length=int(count))


def batchnorm_recompute(
    caches: Mapping[str, Cache],
    spec: ModelSpec,
    settings: TrainSettings,
    sample: BatchNormSample,
    device: str | torch.device = "cpu",
    workers: int = 0,
) -> BatchNormRecompute:
    """The ``recompute`` policy's inputs: a re-iterable loader of ``recompute_patches`` (its
    ``workers`` kept between passes, as a greedy soup recomputes every candidate)."""
    patches = recompute_patches(caches, spec, settings, sample)
    loader = DataLoader(
        patches,
        sample.batch_size,
        shuffle=False,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    return BatchNormRecompute(lambda: build_model(spec), loader, device, len(patches))


def _keep_average(state: StateDict, inputs: PolicyInputs) -> StateDict:
    return state


def _copy_best(state: StateDict, inputs: PolicyInputs) -> StateDict:
    """The statistics of the member that scores best alone (a single member keeps its own)."""
    if len(inputs.members) > 1:
        best = max(inputs.members, key=lambda path: inputs.evaluate({path: 1.0}))
        state.update(
            read_tensors(best, lambda name: is_bn_statistic(name) and inputs.averaged(name))
        )
    return state


def _recompute(state: StateDict, inputs: PolicyInputs) -> StateDict:
    """The averaged weights with statistics re-estimated over the recompute batches."""
    recompute = inputs.recompute
    assert recompute is not None  # check_policy refuses the policy without it
    model = recompute.make_model().to(recompute.device)
    model.load_state_dict(state)
    recompute_bn(model, recompute.batches, recompute.device)
    recomputed = model.state_dict()
    return {
        name: recomputed[name].detach().cpu() if inputs.averaged(name) else tensor
        for name, tensor in state.items()
    }


POLICY_FUNCTIONS: dict[str, Callable[[StateDict, PolicyInputs], StateDict]] = {
    "average": _keep_average,
    "recompute": _recompute,
    "copy-best": _copy_best,
}


def check_policy(name: str, *, can_score: bool, recompute: BatchNormRecompute | None) -> None:
    """Refuse a policy before any weight is read when what it needs is missing."""
    if name not in POLICY_FUNCTIONS:
        raise ValueError(f"unknown BatchNorm policy {name!r}; known: {BN_POLICIES}")
    if name == "recompute" and recompute is None:
        raise ValueError("the recompute BatchNorm policy needs a BatchNormRecompute")
    if name == "copy-best" and not can_score:
        raise ValueError("the copy-best BatchNorm policy needs a scorer")
