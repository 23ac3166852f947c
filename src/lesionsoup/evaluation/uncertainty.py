"""The study's uncertainty tables, from the evaluation files behind ``metrics.csv``.

- ``interval_table``: every pooled metric of every (model, test set, lesion) with
  its bootstrap interval over the test images (``metrics_ci.csv``).
- ``comparison_table``: every model of a combination against the combination's
  single-model baseline, on the same test images, for one metric: the paired
  difference, its interval, its p-value and Holm's adjustment within its family:
  all comparisons of one lesion (or of the mean over lesions) in the study
  (``comparisons.csv``).

Both also hold the mean over lesions (lesion ``mean``, each resample's metric
averaged over the lesions that have one), which the method figure shows. The
baseline of a combination is its first single model in path order (the first
recipe's first seed). Every bootstrap uses the same seed, so models scored on one
test set are resampled with the same draws of images.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lesionsoup.core.metrics import POOLED_METRICS
from lesionsoup.evaluation.evaluate import EvaluationError, load_evaluation
from lesionsoup.evaluation.statistics import (
    ImageHistograms,
    bootstrap_interval,
    holm,
    image_histograms_from_dict,
    paired_comparison,
)
from lesionsoup.plan.evaluation import SINGLE

INTERVAL_COLUMNS = (
    "model", "train_combo", "method", "test_dataset", "lesion", "metric",
    "value", "low", "high", "resamples",
)  # fmt: skip
COMPARISON_COLUMNS = (
    "train_combo", "method", "model", "baseline", "test_dataset", "lesion", "metric",
    "difference", "low", "high", "p_value", "p_holm", "significant",
)  # fmt: skip


#: The ``lesion`` of rows about the mean over lesions.
MEAN_OVER_LESIONS = "mean"


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

    def groups(self) -> dict[str, ImageHistograms | list[ImageHistograms]]:
        """Each lesion's images, and all lesions together for their mean."""
        return {**self.lesions, MEAN_OVER_LESIONS: list(self.lesions.values())}


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
                image_histograms_from_dict(entry),
            )  # fmt: skip
        )
    return scored


def interval_table(scored: Iterable[Scored], settings: BootstrapSettings) -> pd.DataFrame:
    """Each pooled metric of each (model, test set, lesion) with its percentile interval."""
    rows = []
    for item in scored:
        for lesion, images in item.groups().items():
            for name, metric in POOLED_METRICS.items():
                interval = bootstrap_interval(
                    images, metric, settings.resamples, settings.confidence, settings.seed
                )
                rows.append(
                    (
                        item.model,
                        item.train_combo,
                        item.method,
                        item.test_dataset,
                        lesion,
                        name,
                        interval.estimate,
                        interval.low,
                        interval.high,
                        interval.resamples,
                    )  # fmt: skip
                )
    return pd.DataFrame(rows, columns=list(INTERVAL_COLUMNS))


def _baselines(scored: list[Scored]) -> dict[tuple[str, str], Scored]:
    """(combination, test set) -> its single-model baseline."""
    baselines: dict[tuple[str, str], Scored] = {}
    for item in sorted(scored, key=lambda item: item.model):
        if item.method == SINGLE:
            baselines.setdefault((item.train_combo, item.test_dataset), item)
    return baselines


def comparison_table(
    scored: Iterable[Scored], metric: str, settings: BootstrapSettings
) -> pd.DataFrame:
    """Every non-baseline model against its combination's baseline, per lesion and for
    the mean over lesions; Holm's adjustment runs over the rows of each lesion."""
    scored = list(scored)
    if metric not in POOLED_METRICS:
        raise ValueError(f"comparisons need a pooled metric {sorted(POOLED_METRICS)}, not {metric}")
    baselines = _baselines(scored)
    rows = []
    for item in sorted(scored, key=lambda item: (item.train_combo, item.model, item.test_dataset)):
        baseline = baselines.get((item.train_combo, item.test_dataset))
        if baseline is None or baseline.model == item.model:
            continue
        if baseline.image_ids != item.image_ids:
            raise EvaluationError(
                f"{item.model} and {baseline.model} were scored on different {item.test_dataset} "
                "images; a paired comparison needs the same ones"
            )
        for lesion, images in item.groups().items():
            result = paired_comparison(
                baseline.groups()[lesion], images, POOLED_METRICS[metric],
                settings.resamples, settings.confidence, settings.seed,
            )  # fmt: skip
            rows.append(
                [
                    item.train_combo,
                    item.method,
                    item.model,
                    baseline.model,
                    item.test_dataset,
                    lesion,
                    metric,
                    result.difference,
                    result.low,
                    result.high,
                    result.p_value,
                ]  # fmt: skip
            )
    table = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS[:-2]))
    family = table.groupby("lesion")["p_value"]
    table["p_holm"] = family.transform(lambda p_values: holm(list(p_values))).astype(float)
    table["significant"] = table["p_holm"] < settings.alpha
    return table
