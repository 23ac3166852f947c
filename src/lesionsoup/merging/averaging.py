"""Weight-space merging: uniform, greedy and hierarchical soups, SWA, BatchNorm policies.

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

BatchNorm running statistics get one of three policies per merged model:

``average``    averaged like the weights (what model soups and FissionFusion do);
``recompute``  reset and re-estimated over a fixed set of batches, as
               ``torch.optim.swa_utils.update_bn`` does (see ``recompute_bn``);
``copy-best``  copied from the member with the best individual held-out score.

Selection (greedy, hierarchical greedy) scores every candidate through
``Merger.evaluate``, which builds the candidate with ``Merger.build`` — the
same path, BatchNorm policy included, that builds the final model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, Literal, Protocol

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lesionsoup.core.checkpoint import CheckpointError, StateDict, load_metadata, tensor_specs
from lesionsoup.inference.predictor import INFERENCE_FIELDS, IncompatibleModels, agreed_fields

BatchNormPolicy = Literal["average", "recompute", "copy-best"]
BN_POLICIES: tuple[str, ...] = ("average", "recompute", "copy-best")
#: State-dict entries (last name component) that hold BatchNorm running statistics.
BN_STATISTICS: tuple[str, ...] = ("running_mean", "running_var", "num_batches_tracked")
#: Hierarchical soups, named global-then-local: ``GoU`` is greedy over local uniform soups.
HIERARCHICAL: tuple[str, ...] = ("UoU", "UoG", "GoU", "GoG")
RULES: tuple[str, ...] = ("uniform", "greedy", "swa", *HIERARCHICAL)

#: Metadata a merged model inherits: what inference needs (every ingredient records it
#: alike, so the merged model is as complete as they are), the shared initialisation, and
#: the parent of the ingredient it is described by (the first, or the single best).
LINEAGE: tuple[str, ...] = (*INFERENCE_FIELDS, "init_id", "parent")
#: A soup: each ingredient file's weight in the average.
Weights = dict[Path, float]


class Scorer(Protocol):
    """Held-out score of a model given its state dict; higher is better."""

    def __call__(self, state_dict: StateDict) -> float: ...


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


def is_bn_statistic(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in BN_STATISTICS


def check_compatible(paths: Sequence[Path]) -> dict[Path, dict[str, Any]]:
    """The metadata of each checkpoint, once all are known to be averageable together."""
    if not paths:
        raise ValueError("no ingredients to merge")
    reference, *others = map(Path, paths)
    metadata = {path: load_metadata(path) for path in (reference, *others)}
    if metadata[reference].get("init_id") is None:
        raise IncompatibleModels(
            f"{reference}: no init_id, so a shared initialisation cannot be verified"
        )
    agreed_fields(metadata, (*INFERENCE_FIELDS, "init_id"))
    specs = tensor_specs(reference)
    for other in others:
        difference = _spec_difference(specs, tensor_specs(other))
        if difference:
            raise IncompatibleModels(f"{other} and {reference} differ: {difference}")
    return metadata


def lineage_of(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The ``LINEAGE`` entries of a checkpoint's metadata, for a model merged from it."""
    return {key: metadata[key] for key in LINEAGE if key in metadata}


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


def _read_tensors(
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


def average_checkpoints(paths: Sequence[Path], weights: Sequence[float] | None = None) -> StateDict:
    """The weighted average (weights normalised to sum 1; default equal) of checkpoint files.

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
        total.add(_read_tensors(path), weight)
    return total.result()


def interpolate(
    state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor], lam: float
) -> StateDict:
    """``(1 - lam) * a + lam * b`` tensor by tensor (non-float tensors: maximum of both)."""
    if state_a.keys() != state_b.keys():
        difference = sorted(state_a.keys() ^ state_b.keys())
        raise ValueError(f"state dicts differ in tensors: {difference}")
    total = _WeightedSum()
    total.add(state_a.items(), 1.0 - lam)
    total.add(((name, state_b[name]) for name in state_a), lam)
    return total.result()


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


@dataclass(frozen=True)
class SelectionStep:
    """One greedy decision: the candidate tried, the soup's score with it, kept or not."""

    stage: str  # "greedy", "global", or "local <group>"
    candidate: str
    score: float
    accepted: bool


@dataclass
class MergeResult:
    """A merged state dict and its lineage."""

    state_dict: StateDict
    rule: str
    bn_policy: str
    ingredients: list[str]
    weights: dict[str, float]  # every ingredient considered; 0 for those left out
    selection_trace: list[SelectionStep]
    merge_seconds: float  # building the final model
    selection_seconds: float  # scoring candidates
    compute_seconds: float  # training time of the ingredients (sum; SWA: the latest snapshot's)
    score: float | None  # the final model's held-out score, when selection computed it
    lineage: dict[str, Any] = field(default_factory=dict)  # LINEAGE: what the ingredients share

    def metadata(self) -> dict[str, Any]:
        """Sidecar metadata for ``save_checkpoint``."""
        return {
            **self.lineage,
            "rule": self.rule,
            "bn_policy": self.bn_policy,
            "ingredients": self.ingredients,
            "weights": self.weights,
            "selection_trace": [asdict(step) for step in self.selection_trace],
            "merge_seconds": self.merge_seconds,
            "selection_seconds": self.selection_seconds,
            "compute_seconds": self.compute_seconds,
            **({"validation": {"selection_score": self.score}} if self.score is not None else {}),
        }


@dataclass(frozen=True)
class _Component:
    """A unit of greedy selection: one ingredient, or a local soup."""

    label: str
    weights: Weights


def _mean(soups: Sequence[Weights]) -> Weights:
    """The uniform average of soups, as flat ingredient weights."""
    mean: Weights = {}
    for soup in soups:
        for path, weight in soup.items():
            mean[path] = mean.get(path, 0.0) + weight / len(soups)
    return mean


def _group_label(group_key: str | Callable[[dict[str, Any]], Hashable]) -> str:
    return group_key if isinstance(group_key, str) else getattr(group_key, "__name__", "group")


class Merger:
    """Soups of one set of compatible checkpoints under one BatchNorm policy.

    ``scorer`` is needed for greedy selection and for ``copy-best``;
    ``recompute`` for the ``recompute`` policy.
    """

    def __init__(
        self,
        ingredients: Sequence[Path],
        *,
        bn_policy: BatchNormPolicy = "average",
        scorer: Scorer | None = None,
        recompute: BatchNormRecompute | None = None,
    ) -> None:
        self.ingredients = [Path(p) for p in ingredients]
        if len(set(self.ingredients)) != len(self.ingredients):
            raise ValueError(f"an ingredient is listed twice: {[str(p) for p in ingredients]}")
        if bn_policy not in BN_POLICIES:
            raise ValueError(f"unknown BatchNorm policy {bn_policy!r}; known: {BN_POLICIES}")
        if bn_policy == "recompute" and recompute is None:
            raise ValueError("the recompute BatchNorm policy needs a BatchNormRecompute")
        if bn_policy == "copy-best" and scorer is None:
            raise ValueError("the copy-best BatchNorm policy needs a scorer")
        self.bn_policy = bn_policy
        self.scorer = scorer
        self.recompute = recompute
        self.metadata = check_compatible(self.ingredients)
        self._scores: dict[tuple[tuple[str, float], ...], float] = {}

    # -- building and scoring: the one path for candidates and final models --

    def _members(self, weights: Mapping[Path, float]) -> list[Path]:
        """Ingredients with a positive weight, in ingredient order."""
        return [path for path in self.ingredients if weights.get(path, 0.0) > 0]

    def build(self, weights: Mapping[Path, float]) -> StateDict:
        """The averaged state dict of a soup with this merger's BatchNorm policy applied."""
        members = self._members(weights)
        state = average_checkpoints(members, [weights[path] for path in members])
        if self.bn_policy == "copy-best" and len(members) > 1:
            best = max(members, key=lambda path: self.evaluate({path: 1.0}))
            state.update(_read_tensors(best, is_bn_statistic))
        elif self.bn_policy == "recompute":
            assert self.recompute is not None
            model = self.recompute.make_model().to(self.recompute.device)
            model.load_state_dict(state)
            recompute_bn(model, self.recompute.batches, self.recompute.device)
            state = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
        return state

    def _soup_key(self, weights: Mapping[Path, float]) -> tuple[tuple[str, float], ...]:
        """Normalised weights, rounded so that one soup reached two ways is one key."""
        members = self._members(weights)
        total = sum(weights[path] for path in members)
        return tuple((str(path), round(weights[path] / total, 12)) for path in members)

    def evaluate(self, weights: Mapping[Path, float]) -> float:
        """The held-out score of a soup built by ``build`` (remembered per soup)."""
        if self.scorer is None:
            raise ValueError("scoring soups needs a scorer")
        key = self._soup_key(weights)
        if key not in self._scores:
            score = float(self.scorer(self.build(weights)))
            if math.isnan(score):
                raise ValueError(f"the scorer returned NaN for the soup {dict(key)}")
            self._scores[key] = score
        return self._scores[key]

    # -- selection --

    def _greedy(
        self, components: Sequence[_Component], stage: str
    ) -> tuple[Weights, list[SelectionStep]]:
        """Wortsman et al.'s greedy soup over components (ranked by their own score, each
        tried once, kept only when the soup's score strictly improves)."""
        ranked = sorted(components, key=lambda c: self.evaluate(c.weights), reverse=True)
        chosen = [ranked[0]]
        best = self.evaluate(ranked[0].weights)
        trace = [SelectionStep(stage, ranked[0].label, best, True)]
        for component in ranked[1:]:
            score = self.evaluate(_mean([c.weights for c in [*chosen, component]]))
            accepted = score > best
            trace.append(SelectionStep(stage, component.label, score, accepted))
            if accepted:
                chosen.append(component)
                best = score
        return _mean([c.weights for c in chosen]), trace

    def _singles(self, paths: Sequence[Path]) -> list[_Component]:
        return [_Component(str(path), {path: 1.0}) for path in paths]

    def groups(
        self, group_key: str | Callable[[dict[str, Any]], Hashable] = "learning_rate"
    ) -> dict[str, list[Path]]:
        """Ingredients grouped by a hyperparameter name (or a function of the metadata),
        groups in order of first appearance."""
        label = _group_label(group_key)
        groups: dict[str, list[Path]] = {}
        for path in self.ingredients:
            if isinstance(group_key, str):
                hyperparameters = self.metadata[path].get("hyperparameters", {})
                if group_key not in hyperparameters:
                    raise ValueError(f"{path}: hyperparameters have no {group_key!r} to group by")
                value = hyperparameters[group_key]
            else:
                value = group_key(self.metadata[path])
            groups.setdefault(f"{label}={value}", []).append(path)
        return groups

    def uniform(self) -> MergeResult:
        return self._finish("uniform", self._uniform_weights(), [], 0.0)

    def _uniform_weights(self) -> Weights:
        return {path: 1.0 / len(self.ingredients) for path in self.ingredients}

    def swa(self) -> MergeResult:
        """Stochastic weight averaging: the uniform average of one run's snapshots."""
        return self._finish("swa", self._uniform_weights(), [], 0.0)

    def greedy(self) -> MergeResult:
        start = perf_counter()
        weights, trace = self._greedy(self._singles(self.ingredients), "greedy")
        return self._finish("greedy", weights, trace, perf_counter() - start)

    def hierarchical(
        self, variant: str, group_key: str | Callable[[dict[str, Any]], Hashable] = "learning_rate"
    ) -> MergeResult:
        """FissionFusion's hierarchical soup: a local soup per group, a global soup of those.

        ``variant`` names the global rule then the local one: ``GoU`` is a greedy
        soup over the groups' uniform soups.
        """
        if variant not in HIERARCHICAL:
            raise ValueError(f"unknown hierarchical soup {variant!r}; known: {HIERARCHICAL}")
        global_rule, local_rule = variant[0], variant[2]
        start = perf_counter()
        trace: list[SelectionStep] = []
        local_soups = []
        for label, paths in self.groups(group_key).items():
            if local_rule == "G":
                weights, steps = self._greedy(self._singles(paths), f"local {label}")
                trace += steps
            else:
                weights = _mean([{path: 1.0} for path in paths])
            local_soups.append(_Component(label, weights))
        if global_rule == "G":
            weights, steps = self._greedy(local_soups, "global")
            trace += steps
        else:
            weights = _mean([soup.weights for soup in local_soups])
        return self._finish(variant, weights, trace, perf_counter() - start)

    def _finish(
        self, rule: str, weights: Weights, trace: list[SelectionStep], selection_seconds: float
    ) -> MergeResult:
        start = perf_counter()
        state = self.build(weights)
        merge_seconds = perf_counter() - start
        total = sum(weights.values())
        costs = [
            float(meta.get("compute_seconds", meta.get("wall_seconds", 0.0)))
            for meta in self.metadata.values()
        ]
        return MergeResult(
            state_dict=state,
            rule=rule,
            bn_policy=self.bn_policy,
            ingredients=[str(path) for path in self.ingredients],
            weights={str(path): weights.get(path, 0.0) / total for path in self.ingredients},
            selection_trace=trace,
            merge_seconds=merge_seconds,
            selection_seconds=selection_seconds,
            compute_seconds=max(costs) if rule == "swa" else sum(costs),
            score=self._scores.get(self._soup_key(weights)),
            lineage=lineage_of(self.metadata[self.ingredients[0]]),
        )


def merge(
    ingredients: Sequence[Path],
    rule: str,
    *,
    bn_policy: BatchNormPolicy | None = None,
    scorer: Scorer | None = None,
    recompute: BatchNormRecompute | None = None,
    group_key: str | Callable[[dict[str, Any]], Hashable] = "learning_rate",
) -> MergeResult:
    """Merge checkpoints by ``rule`` (one of ``RULES``).

    The BatchNorm policy defaults to ``recompute`` for SWA and ``average`` otherwise.
    """
    if rule not in RULES:
        raise ValueError(f"unknown merge rule {rule!r}; known: {RULES}")
    policy = bn_policy or ("recompute" if rule == "swa" else "average")
    merger = Merger(ingredients, bn_policy=policy, scorer=scorer, recompute=recompute)
    if rule in HIERARCHICAL:
        return merger.hierarchical(rule, group_key)
    return {"uniform": merger.uniform, "greedy": merger.greedy, "swa": merger.swa}[rule]()
