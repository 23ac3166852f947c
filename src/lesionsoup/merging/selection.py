"""Which ingredients a soup keeps, and with what weight: the selection rules as plain functions.

Every rule here sees candidates only through ``evaluate``, the held-out score
of a soup given as ingredient weights, so it can be read and tested without
any model: the caller decides how a soup is built and scored (``Merger``
builds it with the final BatchNorm policy and remembers each score).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lesionsoup.core.merge_rules import SINGLE_BEST
from lesionsoup.merging.averaging import Weights

#: The held-out score of a soup given as ingredient weights; higher is better.
Evaluate = Callable[[Mapping[Path, float]], float]
#: What groups a hierarchical soup: a hyperparameter name, or a function of the metadata.
GroupKey = str | Callable[[dict[str, Any]], Hashable]


@dataclass(frozen=True)
class SelectionStep:
    """One greedy decision: the candidate tried, the soup's score with it, kept or not."""

    stage: str  # "greedy", "global", "local <group>", "best" or "anchor"
    candidate: str
    score: float
    accepted: bool


@dataclass(frozen=True)
class Selection:
    """What a rule chose: the soup's weights, the decisions that led to them, and the
    ingredient the soup is described by (its lineage; None: the first ingredient)."""

    weights: Weights
    trace: list[SelectionStep] = field(default_factory=list)
    described_by: Path | None = None


@dataclass(frozen=True)
class Component:
    """A unit of greedy selection: one ingredient, or a local soup."""

    label: str
    weights: Weights


def mean(soups: Sequence[Mapping[Path, float]]) -> Weights:
    """The uniform average of soups, as flat ingredient weights."""
    total: Weights = {}
    for soup in soups:
        for path, weight in soup.items():
            total[path] = total.get(path, 0.0) + weight / len(soups)
    return total


def uniform(paths: Sequence[Path]) -> Weights:
    return mean([{path: 1.0} for path in paths])


def singles(paths: Sequence[Path]) -> list[Component]:
    return [Component(str(path), {path: 1.0}) for path in paths]


def greedy(components: Sequence[Component], evaluate: Evaluate, stage: str) -> Selection:
    """Wortsman et al.'s greedy soup over components (ranked by their own score, each
    tried once, kept only when the soup's score strictly improves)."""
    ranked = sorted(components, key=lambda c: evaluate(c.weights), reverse=True)
    chosen = [ranked[0]]
    best = evaluate(ranked[0].weights)
    trace = [SelectionStep(stage, ranked[0].label, best, True)]
    for component in ranked[1:]:
        score = evaluate(mean([c.weights for c in [*chosen, component]]))
        accepted = score > best
        trace.append(SelectionStep(stage, component.label, score, accepted))
        if accepted:
            chosen.append(component)
            best = score
    return Selection(mean([c.weights for c in chosen]), trace)


def single_best(paths: Sequence[Path], evaluate: Evaluate, stage: str = SINGLE_BEST) -> Selection:
    """The ingredient with the best held-out score alone (the soup is that model), with
    every ingredient's score in the trace (under ``stage``)."""
    scores = {path: evaluate({path: 1.0}) for path in paths}
    best = max(paths, key=scores.__getitem__)
    trace = [SelectionStep(stage, str(path), s, path == best) for path, s in scores.items()]
    return Selection({best: 1.0}, trace, described_by=best)


def _group_value(path: Path, metadata: dict[str, Any], group_key: GroupKey) -> Hashable:
    if not isinstance(group_key, str):
        return group_key(metadata)
    hyperparameters = metadata.get("hyperparameters", {})
    if group_key not in hyperparameters:
        raise ValueError(f"{path}: hyperparameters have no {group_key!r} to group by")
    return hyperparameters[group_key]


def groups(metadata: Mapping[Path, dict[str, Any]], group_key: GroupKey) -> dict[str, list[Path]]:
    """Ingredients (metadata by path) grouped by ``group_key``, in order of first appearance,
    each group labelled ``<key>=<value>``."""
    label = group_key if isinstance(group_key, str) else getattr(group_key, "__name__", "group")
    grouped: dict[str, list[Path]] = {}
    for path, meta in metadata.items():
        grouped.setdefault(f"{label}={_group_value(path, meta, group_key)}", []).append(path)
    return grouped


def hierarchical(
    grouped: Mapping[str, Sequence[Path]],
    evaluate: Evaluate,
    *,
    global_greedy: bool,
    local_greedy: bool,
) -> Selection:
    """FissionFusion's hierarchical soup: a local soup per group, then a global soup of those,
    each uniform or greedy."""
    trace: list[SelectionStep] = []
    local_soups = []
    for label, paths in grouped.items():
        if local_greedy:
            local = greedy(singles(paths), evaluate, f"local {label}")
            weights, trace = local.weights, trace + local.trace
        else:
            weights = uniform(paths)
        local_soups.append(Component(label, weights))
    if not global_greedy:
        return Selection(mean([soup.weights for soup in local_soups]), trace)
    chosen = greedy(local_soups, evaluate, "global")
    return Selection(chosen.weights, trace + chosen.trace)
