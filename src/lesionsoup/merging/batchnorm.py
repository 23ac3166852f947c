"""BatchNorm running statistics of a merged model: one of three policies.

Averaging weights does not give the statistics the averaged network would
compute, so each merged model names how its statistics are set:

``average``    averaged like the weights (what model soups and FissionFusion do);
``recompute``  reset and re-estimated over a fixed set of batches, as
               ``torch.optim.swa_utils.update_bn`` does (see ``recompute_bn``);
``copy-best``  copied from the member with the best individual held-out score.

The names and each rule's default come from ``lesionsoup.plan.merge_rules``;
``POLICY_FUNCTIONS`` maps each name to what it does to an averaged state dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lesionsoup.core.checkpoint import StateDict
from lesionsoup.merging.averaging import read_tensors
from lesionsoup.merging.selection import Evaluate
from lesionsoup.plan.merge_rules import BN_POLICIES

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


@dataclass(frozen=True)
class PolicyInputs:
    """What a policy may draw on besides the averaged state dict.

    ``evaluate`` scores a soup given as ingredient weights (``copy-best`` ranks
    the members by it, so that selection and policy share one score cache).
    """

    members: Sequence[Path]
    evaluate: Evaluate
    recompute: BatchNormRecompute | None


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


def _keep_average(state: StateDict, inputs: PolicyInputs) -> StateDict:
    return state


def _copy_best(state: StateDict, inputs: PolicyInputs) -> StateDict:
    """The statistics of the member that scores best alone (a single member keeps its own)."""
    if len(inputs.members) > 1:
        best = max(inputs.members, key=lambda path: inputs.evaluate({path: 1.0}))
        state.update(read_tensors(best, is_bn_statistic))
    return state


def _recompute(state: StateDict, inputs: PolicyInputs) -> StateDict:
    """The averaged weights with statistics re-estimated over the recompute batches."""
    recompute = inputs.recompute
    assert recompute is not None  # check_policy refuses the policy without it
    model = recompute.make_model().to(recompute.device)
    model.load_state_dict(state)
    recompute_bn(model, recompute.batches, recompute.device)
    return {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}


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
