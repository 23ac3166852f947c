"""Size curves, the efficiency study: test score and compute against the number of members.

A pool's candidates of one combination are ranked once by their validation
score (``merging.ensembles.top_k``, the ensembles' own ranking) and the first
``max_members`` (K) are kept. For k = 1..K:

- ``uniform``: the uniform soup of the first k (``Merger.build`` with the
  uniform soup's BatchNorm policy);
- ``greedy``: the greedy soup after considering the first k in greedy's order
  (``selection.greedy`` tries each candidate once, so one pass over the K gives
  every prefix from its trace);
- ``ensemble``: the ensemble of the top k (their probabilities averaged).

Each distinct model is evaluated once, on the test split of each of the
combination's own datasets (``evaluation.evaluate``; other test sets are left
out to keep the study small): the k = 1 model is shared by the three curves (a
soup of one is that model unless its policy recomputes BatchNorm), and a
greedy step that rejects its candidate keeps the previous soup's scores. A
point's score is the metric's mean over lesions, as ``metrics.csv``'s means.

Compute of a point on a test set: the training seconds of the k candidates it
considered (``candidates.training_seconds``: each run once, back to the shared
initialisation) plus the measured seconds of its evaluation there. The
validation passes that rank the candidates and score greedy's steps are left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lesionsoup.core.checkpoint import load_metadata, load_state_dict
from lesionsoup.core.combos import combo_name
from lesionsoup.core.metrics import DEFAULT_BINS
from lesionsoup.core.specs import ModelSpec
from lesionsoup.data.cache import Cache
from lesionsoup.evaluation.evaluate import evaluate, evaluation_metrics
from lesionsoup.inference.infer import DEFAULT_SETTINGS, InferenceSettings
from lesionsoup.inference.predictor import Predictor, member_of, spec_of
from lesionsoup.merging import selection
from lesionsoup.merging.batchnorm import batchnorm_recompute
from lesionsoup.merging.candidates import expand_ingredients, training_seconds
from lesionsoup.merging.ensembles import top_k
from lesionsoup.merging.held_out import HeldOut, settings_of
from lesionsoup.merging.selection import SelectionStep
from lesionsoup.merging.soups import Merger
from lesionsoup.plan.merge_rules import ENSEMBLE, BatchNormPolicy, BatchNormSample, merge_rule
from lesionsoup.plan.report import SIZE_CURVE_SOUPS as SOUP_CURVES

#: The soup curves (named by their merge rules), then the ensemble curve.
CURVES: tuple[str, ...] = (*SOUP_CURVES, ENSEMBLE)
COLUMNS = (
    "combo", "curve", "k", "members", "test_dataset", "metric", "value",
    "training_seconds", "inference_seconds", "compute_seconds",
)  # fmt: skip
#: How the ``members`` column joins the member paths.
MEMBER_SEPARATOR = ";"


@dataclass(frozen=True)
class Point:
    """One point of a curve: the models it combines, and the candidates trained to reach it."""

    curve: str
    k: int
    members: tuple[Path, ...]
    considered: tuple[Path, ...]


def curve_points(ranked: Sequence[Path], greedy_trace: Sequence[SelectionStep]) -> list[Point]:
    """Every curve's points for k = 1..len(ranked); the greedy curve in its trace's order."""
    ranked = tuple(ranked)
    order = tuple(Path(step.candidate) for step in greedy_trace)
    points = []
    for k in range(1, len(ranked) + 1):
        kept = tuple(Path(step.candidate) for step in greedy_trace[:k] if step.accepted)
        points += [
            Point("uniform", k, ranked[:k], ranked[:k]),
            Point("greedy", k, kept, order[:k]),
            Point(ENSEMBLE, k, ranked[:k], ranked[:k]),
        ]
    return points


class PointModels:
    """The model of each point: the ranked candidates are loaded once; soups built on demand."""

    def __init__(self, mergers: Mapping[str, Merger], spec: ModelSpec, device: torch.device):
        self.mergers, self.spec, self.device = mergers, spec, device
        ranked = mergers[SOUP_CURVES[0]].ingredients
        self.loaded = {
            path: member_of(path, load_state_dict(path), spec, device) for path in ranked
        }

    def key(self, point: Point) -> tuple[Hashable, ...]:
        """What identifies a point's model: one candidate alone, a soup or an ensemble."""
        alone = point.curve == ENSEMBLE or self.mergers[point.curve].bn_policy != "recompute"
        if len(point.members) == 1 and alone:
            return ("model", point.members[0])
        members = tuple(sorted(map(str, point.members)))
        if point.curve == ENSEMBLE:
            return (ENSEMBLE, members)
        return ("soup", self.mergers[point.curve].bn_policy, members)

    def predictor(self, point: Point, name: Path) -> Predictor:
        """The point's predictor, named ``name`` in its evaluations."""
        lesions = self.spec.lesion_classes
        if self.key(point)[0] == "soup":
            state = self.mergers[point.curve].build(selection.uniform(point.members))
            return Predictor(name, [member_of(name, state, self.spec, self.device)], lesions)
        weight = 1 / len(point.members)
        members = [dataclasses.replace(self.loaded[path], weight=weight) for path in point.members]
        return Predictor(name, members, lesions)


def mean_over_lesions(result: Mapping[str, Any], metric: str) -> float:
    """A metric of an ``evaluate`` result, averaged over the lesions that have a value."""
    per_lesion = evaluation_metrics(result)
    values = [metrics.get(metric) for metrics in per_lesion.values()]
    if any(value is None for value in values):
        known = sorted(next(iter(per_lesion.values())))
        raise ValueError(f"unknown metric {metric!r} of an evaluation; known: {known}")
    return float(pd.Series(values, dtype=float).mean())


def _mergers(
    ranked: Sequence[Path],
    caches: Mapping[str, Cache],
    policies: Mapping[str, BatchNormPolicy],
    sample: BatchNormSample,
    device: str | torch.device,
    workers: int,
) -> tuple[dict[str, Merger], ModelSpec]:
    """A merger of the ranked candidates for each soup curve, scored on the validation split."""
    metadata = load_metadata(ranked[0])
    spec, settings = spec_of(ranked[0], metadata), settings_of(metadata)
    held_out = HeldOut(caches, settings.bins, device)
    recompute = (
        batchnorm_recompute(caches, spec, settings, sample, device, workers)
        if "recompute" in policies.values()
        else None
    )
    mergers = {
        curve: Merger(
            ranked, bn_policy=policies[curve], scorer=held_out.scorer(spec), recompute=recompute
        )
        for curve in SOUP_CURVES
    }
    return mergers, spec


def size_curves(
    candidates: Sequence[Path],
    caches: Mapping[str, Cache],
    *,
    metric: str = "ap",
    max_members: int = 3,
    bn_policies: Mapping[str, BatchNormPolicy] | None = None,
    bn_sample: BatchNormSample = BatchNormSample(),  # noqa: B008 (frozen)
    settings: InferenceSettings = DEFAULT_SETTINGS,
    bins: int = DEFAULT_BINS,
    device: str | torch.device = "cpu",
    workers: int = 0,
) -> pd.DataFrame:
    """The long table (``COLUMNS``) of the three curves over k = 1..min(max_members, candidates).

    ``bn_policies`` maps ``uniform`` and ``greedy`` to their BatchNorm policies (default: the
    rules'); ``bn_sample`` and ``workers`` serve the ``recompute`` policy.
    """
    if max_members < 1:
        raise ValueError(f"a size curve needs max_members >= 1, not {max_members}")
    policies = {curve: merge_rule(curve).bn_policy for curve in SOUP_CURVES}
    policies.update(bn_policies or {})
    paths = expand_ingredients(candidates)
    metadata = {path: load_metadata(path) for path in paths}
    ranked, _ = top_k(paths, metadata, caches, min(max_members, len(paths)), device)
    mergers, spec = _mergers(ranked, caches, policies, bn_sample, device, workers)
    greedy = selection.greedy(selection.singles(ranked), mergers["greedy"].evaluate, "greedy")
    models = PointModels(mergers, spec, torch.device(device))
    combo = combo_name(caches)
    scored: dict[tuple[Hashable, ...], list[tuple[str, float, float]]] = {}
    rows = []
    for point in curve_points(ranked, greedy.trace):
        key = models.key(point)
        if key not in scored:
            predictor = models.predictor(point, Path(combo, f"{point.curve}-k{point.k}"))
            results = [
                evaluate(predictor, cache.directory, settings=settings, bins=bins)
                for cache in caches.values()
            ]
            scored[key] = [
                (r["test_dataset"], mean_over_lesions(r, metric), r["seconds"]) for r in results
            ]
        trained = training_seconds(point.considered)
        members = MEMBER_SEPARATOR.join(map(str, point.members))
        rows += [
            (combo, point.curve, point.k, members, test, metric, value, trained, seconds,
             trained + seconds)
            for test, value, seconds in scored[key]
        ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))
