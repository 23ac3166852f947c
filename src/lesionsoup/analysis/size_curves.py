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

Each distinct model is scored once, on the test split of each of the
combination's own datasets (other test sets are left out to keep the study
small): the k = 1 model is shared by the three curves (a soup of one is that
model unless its policy recomputes BatchNorm), and a greedy step that rejects
its candidate keeps the previous soup's scores. A point's score is the metric's
mean over lesions, as ``metrics.csv``'s means; ``low`` and ``high`` are its
bootstrap interval over the test images (``confidence``; ``resamples``: the
replicates it uses, as in ``metrics_ci.csv``), from the evaluation's
per-image histograms with the draws the study's intervals use on that test set
(``uncertainty.draws_seed``), so a point's interval needs no inference either.
As in the study's other figures, ``value`` is the full-bin pooled score and the
interval comes from the per-image histograms (``statistics.image_groups``).

Inference the study already has is not run again: a model's scores on a test
set come from one of the given evaluation files (the workflow's ``evaluate``
results) when that file is of the point's model and its fingerprint
(``evaluation.per_model.pair_fingerprint``: the model file's bytes, the cache's
content, the test split, the inference settings, the bins, the format) is the
one this evaluation would have, at cache resolution; the path spelling of the
cache is not compared. A file's model is the point's when it is the candidate
itself, or a soup whose sidecar describes a uniform soup of ranked candidates
with the ``average`` BatchNorm policy (more than two listed in rank order, so
that the float64 sums are summed in the same order), or a soup of one candidate
under any policy but ``recompute``. Soups that
recompute or copy BatchNorm statistics (their result depends on a sample or a
scorer) and ensemble files are not recognised, and a study evaluated at native
resolution reuses nothing: all points are then computed at cache resolution, so
the points of a curve are always scored the same way. Any other file is left
out, with a log line naming it and what differs; everything left is evaluated
(``evaluation.evaluate``). The ``evaluation`` column says which.

Compute of a point on a test set: the training seconds of the k candidates it
considered (``candidates.training_seconds``: each run once, back to the shared
initialisation) plus the seconds of its evaluation there (measured now, or
recorded in the reused file). The validation passes that rank the candidates and
score greedy's steps are left out.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lesionsoup.core.atomic import write_csv
from lesionsoup.core.checkpoint import SUFFIX, load_metadata, load_state_dict
from lesionsoup.core.combos import combo_name
from lesionsoup.core.device import pick_device
from lesionsoup.core.fingerprint import changed_keys
from lesionsoup.core.merge_rules import SIZE_CURVE_SOUPS as SOUP_CURVES
from lesionsoup.core.merge_rules import BatchNormPolicy, BatchNormSample, merge_rule
from lesionsoup.core.methods import ENSEMBLE
from lesionsoup.core.metrics import DEFAULT_BINS, POOLED_METRICS
from lesionsoup.core.specs import ModelSpec
from lesionsoup.data.cache import Cache
from lesionsoup.data.staging import staged_caches
from lesionsoup.evaluation.evaluate import evaluate, evaluation_metrics, load_evaluation
from lesionsoup.evaluation.per_model import EvaluationTarget, model_digest, pair_fingerprint
from lesionsoup.evaluation.statistics import (
    Interval,
    bootstrap_interval,
    image_histograms_from_dict,
)
from lesionsoup.evaluation.uncertainty import BootstrapSettings, draws_seed
from lesionsoup.inference.infer import DEFAULT_SETTINGS, InferenceSettings
from lesionsoup.inference.predictor import Predictor, member_of, spec_of
from lesionsoup.merging import selection
from lesionsoup.merging.batchnorm import batchnorm_recompute
from lesionsoup.merging.candidates import expand_ingredients, training_seconds
from lesionsoup.merging.ensembles import top_k
from lesionsoup.merging.held_out import HeldOut, settings_of
from lesionsoup.merging.selection import SelectionStep
from lesionsoup.merging.soups import Merger

#: The soup curves (named by their merge rules), then the ensemble curve.
CURVES: tuple[str, ...] = (*SOUP_CURVES, ENSEMBLE)
COLUMNS = (
    "combo", "curve", "k", "members", "test_dataset", "metric", "value", "low", "high",
    "confidence", "resamples", "evaluation", "training_seconds", "inference_seconds",
    "compute_seconds",
)  # fmt: skip
#: How the ``members`` column joins the member paths.
MEMBER_SEPARATOR = ";"
#: The ``evaluation`` column: the scores came from an evaluation file, or were computed.
REUSED, COMPUTED = "reused", "computed"
#: The one BatchNorm policy of the soups of several members an evaluation file may stand for.
REUSABLE_SOUP_POLICY = "average"
#: Point-model key -> cache name -> an ``evaluate`` result of that model there.
Scores = dict[tuple[Hashable, ...], dict[str, dict[str, Any]]]
#: A point's ``evaluate`` result on one test set, whether it was reused, and its interval.
PointScore = tuple[dict[str, Any], str, Interval]

log = logging.getLogger(__name__)


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


def evaluated_key(model: Path, ranked: Sequence[Path]) -> tuple[Hashable, ...] | None:
    """The ``PointModels.key`` of an evaluated model file, or None when it is no point's model.

    A ranked candidate is itself; a soup file is the soup its sidecar's weights describe, when
    they are uniform over ranked candidates (see the module docstring).
    """
    if model in ranked:
        return ("model", model)
    if model.suffix != SUFFIX:
        return None
    metadata = load_metadata(model)
    weights = {Path(p): w for p, w in (metadata.get("weights") or {}).items() if w > 0}
    members = [Path(p) for p in metadata.get("ingredients", []) if Path(p) in weights]
    uniform = len({round(w / sum(weights.values()), 12) for w in weights.values()}) == 1
    in_rank_order = len(members) <= 2 or members == [p for p in ranked if p in weights]
    if not (members and uniform and in_rank_order and len(members) == len(weights)):
        return None
    policy = metadata.get("bn_policy")
    if len(members) == 1 and policy != "recompute":
        return ("model", members[0])
    if policy != REUSABLE_SOUP_POLICY:
        return None
    return ("soup", policy, tuple(sorted(map(str, members))))


def reusable_evaluations(
    evaluations: Sequence[Path],
    ranked: Sequence[Path],
    caches: Mapping[str, Cache],
    settings: InferenceSettings,
    bins: int,
) -> Scores:
    """The evaluation files that can stand in for evaluating a point's model on one of the
    caches' test splits, by point-model key and cache name; the others are logged and left out."""
    found: Scores = {}
    for path in map(Path, evaluations):
        result = load_evaluation(path)
        recorded = result.get("fingerprint") or {}
        model = Path(recorded.get("model", result["model"]))
        key = evaluated_key(model, ranked) if model.is_file() else None
        name = next(
            (n for n, c in caches.items() if c.fingerprint == recorded.get("cache_fingerprint")),
            None,
        )
        if key is None or name is None:
            why = f"{model} is no point's model" if key is None else "another test set"
            log.info("%s: not reused (%s)", path, why)
            continue
        target = EvaluationTarget(caches[name].directory, path)
        expected = pair_fingerprint(
            model, model_digest(model), target, "test", settings, bins, "cache"
        )
        changed = changed_keys({**recorded, "cache": None}, {**expected, "cache": None})
        if changed:
            log.info(
                "%s: not reused (differs from the size curve's evaluation in %s)", path, changed
            )
            continue
        found.setdefault(key, {}).setdefault(name, result)  # the first given wins
    return found


def point_scores(
    models: PointModels,
    point: Point,
    name: Path,
    caches: Mapping[str, Cache],
    reused: Mapping[str, dict[str, Any]],
    evaluation: tuple[InferenceSettings, int],
) -> list[tuple[dict[str, Any], str]]:
    """The point's ``evaluate`` result on each cache's test split, and whether it was reused;
    the predictor is built only when some test split has no reusable result."""
    settings, bins = evaluation
    predictor: Predictor | None = None
    results = []
    for cache_name, cache in caches.items():
        if cache_name in reused:
            results.append((reused[cache_name], REUSED))
            continue
        predictor = predictor or models.predictor(point, name)
        results.append(
            (evaluate(predictor, cache.directory, settings=settings, bins=bins), COMPUTED)
        )
    return results


def mean_over_lesions(result: Mapping[str, Any], metric: str) -> float:
    """A metric of an ``evaluate`` result, averaged over the lesions that have a value."""
    per_lesion = evaluation_metrics(result)
    values = [metrics.get(metric) for metrics in per_lesion.values()]
    if any(value is None for value in values):
        known = sorted(next(iter(per_lesion.values())))
        raise ValueError(f"unknown metric {metric!r} of an evaluation; known: {known}")
    return float(pd.Series(values, dtype=float).mean())


def point_interval(
    result: Mapping[str, Any], metric: str, bootstrap: BootstrapSettings
) -> Interval:
    """The mean over lesions of a pooled metric of an ``evaluate`` result, with its interval
    over the test images: the study's draws of that test set (``uncertainty.draws_seed``)."""
    lesions = image_histograms_from_dict(result["image_histograms"], result["histograms"])
    return bootstrap_interval(
        list(lesions.values()),
        POOLED_METRICS[metric],
        bootstrap.resamples,
        bootstrap.confidence,
        draws_seed(bootstrap.seed, result["test_dataset"]),
    )


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


@dataclass(frozen=True)
class SizeCurveOptions:
    """What a size curve measures and how: ``bn_policies`` maps ``uniform`` and ``greedy`` to
    their BatchNorm policies (default: the rules'), ``bn_sample`` serves the ``recompute``
    policy; ``evaluations`` are evaluation files whose results are reused where they are a
    point's (module docstring); ``bootstrap`` sets the points' intervals (its ``alpha`` is
    unused)."""

    metric: str = "ap"
    max_members: int = 3
    bn_policies: Mapping[str, BatchNormPolicy] | None = None
    bn_sample: BatchNormSample = BatchNormSample()
    settings: InferenceSettings = DEFAULT_SETTINGS
    bins: int = DEFAULT_BINS
    evaluations: Sequence[Path] = ()
    bootstrap: BootstrapSettings = BootstrapSettings()


def size_curves(
    candidates: Sequence[Path],
    caches: Mapping[str, Cache],
    options: SizeCurveOptions = SizeCurveOptions(),  # noqa: B008 (frozen)
    *,
    device: str | torch.device = "cpu",
    workers: int = 0,
) -> pd.DataFrame:
    """The long table (``COLUMNS``) of the three curves over k = 1..min(max_members,
    candidates); ``workers`` load the BatchNorm sample of the ``recompute`` policy."""
    metric, max_members, bootstrap = options.metric, options.max_members, options.bootstrap
    if max_members < 1:
        raise ValueError(f"a size curve needs max_members >= 1, not {max_members}")
    if metric not in POOLED_METRICS:
        known = sorted(POOLED_METRICS)
        raise ValueError(f"a size curve's metric is a pooled metric {known}, not {metric!r}")
    policies = {curve: merge_rule(curve).bn_policy for curve in SOUP_CURVES}
    policies.update(options.bn_policies or {})
    paths = expand_ingredients(candidates)
    metadata = {path: load_metadata(path) for path in paths}
    ranked, _ = top_k(paths, metadata, caches, min(max_members, len(paths)), device)
    mergers, spec = _mergers(ranked, caches, policies, options.bn_sample, device, workers)
    greedy = selection.greedy(selection.singles(ranked), mergers["greedy"].evaluate, "greedy")
    models = PointModels(mergers, spec, torch.device(device))
    inference = (options.settings, options.bins)
    reusable = reusable_evaluations(options.evaluations, ranked, caches, *inference)
    combo = combo_name(caches)
    scored: dict[tuple[Hashable, ...], list[PointScore]] = {}
    rows = []
    for point in curve_points(ranked, greedy.trace):
        key = models.key(point)
        if key not in scored:
            name = Path(combo, f"{point.curve}-k{point.k}")
            scored[key] = [
                (r, how, point_interval(r, metric, bootstrap))
                for r, how in point_scores(
                    models, point, name, caches, reusable.get(key, {}), inference
                )
            ]
        trained = training_seconds(point.considered)
        members = MEMBER_SEPARATOR.join(map(str, point.members))
        rows += [
            (combo, point.curve, point.k, members, r["test_dataset"], metric,
             mean_over_lesions(r, metric), ci.low, ci.high, bootstrap.confidence, ci.resamples,
             how, trained, r["seconds"], trained + r["seconds"])
            for r, how, ci in scored[key]
        ]  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))


def run_size_curve(
    candidates: Sequence[Path],
    caches: Sequence[Path],
    options: SizeCurveOptions,
    output: Path,
    *,
    stage_caches: str | None = None,
    device: str = "auto",
    threads: int = 1,
) -> pd.DataFrame:
    """The size-curve stage (``lesionsoup size-curve``): the table of ``candidates`` on the
    caches (opened on checked copies in ``stage_caches``), written to ``output``; ``threads``
    CPU threads, as many minus one loading data."""
    torch.set_num_threads(threads)
    with staged_caches(caches, stage_caches) as opened:
        device_name, workers = str(pick_device(device)), max(0, threads - 1)
        table = size_curves(candidates, opened, options, device=device_name, workers=workers)
    write_csv(table, output)
    log.info("%s: %d points of %d curves", output, len(table), table["curve"].nunique())
    return table
