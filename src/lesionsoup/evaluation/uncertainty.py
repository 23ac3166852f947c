"""The study's uncertainty tables, from the evaluation files behind ``metrics.csv``.

One bootstrap pass (``bootstrap``) resamples the test images of every (model, test
set) once and scores every pooled metric, per lesion and for the mean over lesions
(lesion ``mean``, each resample's metric averaged over the lesions that have one).
From it:

- ``interval_table``: every pooled metric of every (model, test set, lesion) with
  its bootstrap interval over the test images (``metrics_ci.csv``).
- ``replicates``: the headline metric's whole-set value and resamples of every
  (model, test set, lesion), from which figures take the interval of any summary
  of models (``bootstrap.npz``, ``evaluation.replicates.Replicates``).
- ``comparison_table``: for the headline metric, every model of a combination
  against the combination's single-model baseline (comparison ``baseline``), and
  every pair the config names (comparison = its name, on every test set both were
  evaluated on), on the same test images: the paired difference ``model -
  baseline``, its interval, its p-value and Holm's adjustment within its family:
  all comparisons of one lesion (or of the mean over lesions) in the study, the
  named ones included (``comparisons.csv``).

The baseline of a combination is its first single model in path order (the first
recipe's first seed). The draws of one test set are seeded by the bootstrap seed
and the test set's name, so every model scored on it is resampled with the same
draws of images, and different test sets independently.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lesionsoup.core.methods import SINGLE
from lesionsoup.core.metrics import POOLED_METRICS
from lesionsoup.evaluation.evaluate import EvaluationError, load_evaluation
from lesionsoup.evaluation.replicates import Replicates
from lesionsoup.evaluation.statistics import (
    ImageHistograms,
    Interval,
    Resampled,
    compare,
    holm,
    image_histograms_from_dict,
    mean_resampled,
    resample,
    resample_weights,
)

INTERVAL_COLUMNS = (
    "model", "train_combo", "method", "test_dataset", "lesion", "metric",
    "value", "low", "high", "resamples",
)  # fmt: skip
COMPARISON_COLUMNS = (
    "comparison", "train_combo", "method", "model", "baseline", "test_dataset", "lesion",
    "metric", "difference", "low", "high", "p_value", "p_holm", "significant",
)  # fmt: skip


#: The ``lesion`` of rows about the mean over lesions.
MEAN_OVER_LESIONS = "mean"
#: The ``comparison`` of a model against its combination's single-model baseline.
BASELINE = "baseline"


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    alpha: float = 0.05  # Holm-adjusted p-value below which a difference is significant


@dataclass(frozen=True)
class Scored:
    """One model on one test set: what ``metrics.csv`` says of it, and its images."""

    model: str
    train_combo: str
    method: str
    test_dataset: str
    image_ids: tuple[str, ...]
    lesions: Mapping[str, ImageHistograms]


def load_scored(
    json_paths: Iterable[Path], model_info: Mapping[str, tuple[str, str]]
) -> list[Scored]:
    """The per-image histograms of each evaluation file, with its model's combo and method."""
    info = {str(Path(model)): value for model, value in model_info.items()}
    scored = []
    for path in map(Path, json_paths):
        result: dict[str, Any] = load_evaluation(path)
        model = str(Path(result["model"]))
        if model not in info:
            raise EvaluationError(f"{path}: model {model} has no train_combo and method")
        entry = result["image_histograms"]
        combo, method = info[model]
        scored.append(
            Scored(
                model,
                combo,
                method,
                result["test_dataset"],
                tuple(entry["image_ids"]),
                image_histograms_from_dict(entry, result["histograms"]),
            )  # fmt: skip
        )
    return scored


@dataclass(frozen=True)
class Bootstrapped:
    """One model on one test set, resampled: the interval of every pooled metric and the
    headline metric's resamples, per lesion and for the mean over lesions."""

    scored: Scored
    intervals: Mapping[tuple[str, str], Interval]  # (lesion, metric) -> interval
    headline: Mapping[str, Resampled]  # lesion -> the headline metric, resampled


def draws_seed(seed: int, test_dataset: str) -> list[int]:
    """The seed of one test set's draws: the bootstrap seed and a stable hash of its name."""
    return [seed, zlib.crc32(test_dataset.encode())]


def _bootstrapped(
    item: Scored, weights: np.ndarray, metric: str, settings: BootstrapSettings
) -> Bootstrapped:
    """Every pooled metric of each lesion, and of their mean, over the rows of ``weights``."""
    lesions = {
        lesion: resample(images, POOLED_METRICS, weights) for lesion, images in item.lesions.items()
    }
    mean = {
        name: mean_resampled([per[name] for per in lesions.values()]) for name in POOLED_METRICS
    }
    lesions[MEAN_OVER_LESIONS] = mean
    intervals = {
        (lesion, name): value.interval(settings.confidence)
        for lesion, metrics in lesions.items()
        for name, value in metrics.items()
    }
    return Bootstrapped(item, intervals, {lesion: per[metric] for lesion, per in lesions.items()})


def _drawn_and_bootstrapped(item: Scored, metric: str, settings: BootstrapSettings) -> Bootstrapped:
    """``_bootstrapped`` with its test set's draws, which depend on nothing but the seed,
    the test set's name and its number of images."""
    seed = draws_seed(settings.seed, item.test_dataset)
    weights = resample_weights(len(item.image_ids), settings.resamples, seed)
    return _bootstrapped(item, weights, metric, settings)


def bootstrap(
    scored: Iterable[Scored], metric: str, settings: BootstrapSettings, workers: int = 1
) -> list[Bootstrapped]:
    """Each (model, test set) resampled, with the same draws for every model of a test set;
    ``metric`` (the headline one, pooled) keeps its resamples for comparisons and figures.
    ``workers`` processes share the (model, test set) pairs; the result does not depend on
    how many."""
    if metric not in POOLED_METRICS:
        known = sorted(POOLED_METRICS)
        raise ValueError(
            f"the comparisons' and replicates' metric is a pooled metric {known}, not {metric}"
        )
    items = list(scored)
    task = partial(_drawn_and_bootstrapped, metric=metric, settings=settings)
    if workers <= 1 or len(items) <= 1:
        return [task(item) for item in items]
    with ProcessPoolExecutor(min(workers, len(items))) as pool:
        return list(pool.map(task, items, chunksize=max(1, len(items) // (4 * workers))))


def interval_table(bootstrapped: Iterable[Bootstrapped]) -> pd.DataFrame:
    """Each pooled metric of each (model, test set, lesion) with its percentile interval."""
    rows = [
        (
            item.scored.model,
            item.scored.train_combo,
            item.scored.method,
            item.scored.test_dataset,
            lesion,
            name,
            interval.estimate,
            interval.low,
            interval.high,
            interval.resamples,
        )  # fmt: skip
        for item in bootstrapped
        for (lesion, name), interval in item.intervals.items()
    ]
    return pd.DataFrame(rows, columns=list(INTERVAL_COLUMNS))


def replicates(
    bootstrapped: Iterable[Bootstrapped], metric: str, settings: BootstrapSettings
) -> Replicates:
    """The headline metric's whole-set value and resamples, a row per (model, test, lesion)."""
    rows = [
        ((item.scored.model, item.scored.test_dataset, lesion), value)
        for item in bootstrapped
        for lesion, value in item.headline.items()
    ]
    return Replicates(
        metric,
        settings.confidence,
        tuple(key for key, _ in rows),
        np.array([value.estimate for _, value in rows], np.float64),
        np.array([value.scores for _, value in rows], np.float64).reshape(
            len(rows), settings.resamples
        ),
    )


#: One comparison: its name, model ``a`` (the baseline) and model ``b``, on one test set.
Pair = tuple[str, Bootstrapped, Bootstrapped]


def _baseline_pairs(bootstrapped: list[Bootstrapped]) -> list[Pair]:
    """Every model against its (combination, test set)'s first single model."""
    baselines: dict[tuple[str, str], Bootstrapped] = {}
    for item in sorted(bootstrapped, key=lambda item: item.scored.model):
        if item.scored.method == SINGLE:
            baselines.setdefault((item.scored.train_combo, item.scored.test_dataset), item)
    pairs = []
    order = sorted(
        bootstrapped, key=lambda b: (b.scored.train_combo, b.scored.model, b.scored.test_dataset)
    )
    for item in order:
        baseline = baselines.get((item.scored.train_combo, item.scored.test_dataset))
        if baseline is not None and baseline.scored.model != item.scored.model:
            pairs.append((BASELINE, baseline, item))
    return pairs


def _named_pairs(
    bootstrapped: list[Bootstrapped], named: Mapping[str, tuple[str, str]]
) -> list[Pair]:
    """Each named (a, b) on every test set both were evaluated on."""
    found = {(item.scored.model, item.scored.test_dataset): item for item in bootstrapped}
    tests = sorted({item.scored.test_dataset for item in bootstrapped})
    pairs = []
    for name, (a, b) in named.items():
        a, b = str(Path(a)), str(Path(b))
        both = [test for test in tests if (a, test) in found and (b, test) in found]
        if not both:
            raise EvaluationError(f"comparison {name}: no test set has evaluations of {a} and {b}")
        pairs += [(name, found[a, test], found[b, test]) for test in both]
    return pairs


def _comparison_rows(pair: Pair, metric: str, confidence: float) -> list[list[Any]]:
    """``b - a`` of one pair for each lesion and for the mean over lesions."""
    name, a, b = pair
    if a.scored.image_ids != b.scored.image_ids:
        raise EvaluationError(
            f"{b.scored.model} and {a.scored.model} were scored on different "
            f"{b.scored.test_dataset} images; a paired comparison needs the same ones"
        )
    rows = []
    for lesion, scores in b.headline.items():
        result = compare(a.headline[lesion], scores, confidence)
        rows.append(
            [
                name,
                b.scored.train_combo,
                b.scored.method,
                b.scored.model,
                a.scored.model,
                b.scored.test_dataset,
                lesion,
                metric,
                result.difference,
                result.low,
                result.high,
                result.p_value,
            ]  # fmt: skip
        )
    return rows


def comparison_table(
    bootstrapped: Iterable[Bootstrapped],
    metric: str,
    settings: BootstrapSettings,
    named: Mapping[str, tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Every non-baseline model against its combination's baseline, then the ``named``
    pairs (name -> (a, b)), per lesion and for the mean over lesions; Holm's adjustment
    runs over all rows of each lesion. ``metric`` is the one ``bootstrap`` kept."""
    bootstrapped = list(bootstrapped)
    pairs = _baseline_pairs(bootstrapped) + _named_pairs(bootstrapped, named or {})
    rows = [row for pair in pairs for row in _comparison_rows(pair, metric, settings.confidence)]
    table = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS[:-2]))
    family = table.groupby("lesion")["p_value"]
    table["p_holm"] = family.transform(lambda p_values: holm(list(p_values))).astype(float)
    table["significant"] = table["p_holm"] < settings.alpha
    return table


@dataclass(frozen=True)
class Uncertainty:
    """What the uncertainty stage writes."""

    intervals: pd.DataFrame
    comparisons: pd.DataFrame
    replicates: Replicates


def uncertainty(
    scored: Iterable[Scored],
    metric: str,
    settings: BootstrapSettings,
    named: Mapping[str, tuple[str, str]] | None = None,
    workers: int = 1,
) -> Uncertainty:
    """The intervals, comparisons and headline replicates, from one bootstrap pass."""
    bootstrapped = bootstrap(scored, metric, settings, workers)
    return Uncertainty(
        interval_table(bootstrapped),
        comparison_table(bootstrapped, metric, settings, named),
        replicates(bootstrapped, metric, settings),
    )
