"""The tables every figure is drawn from ``metrics.csv`` (read by
``lesionsoup.evaluation.evaluate.read_metrics``).

A model's *score* on a test set is a metric averaged over the lesions that
have a value there (a lesion without positives has NaN AUPR and is left out).
Every table written beside a figure names its metric in a first ``metric``
column (``with_metric``), and every figure names it in its labels
(``lesionsoup.core.metrics.metric_label``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from lesionsoup.core.methods import METHOD_ORDER


def metric_rows(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of one metric; an unknown metric is an error naming the known ones."""
    rows = metrics[metrics["metric"] == metric]
    if rows.empty:
        known = sorted(metrics["metric"].unique())
        raise ValueError(f"metric {metric!r} not in the metrics table; known: {known}")
    return rows


def model_scores(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (model, test set): train_combo, method, and ``score`` (mean over lesions)."""
    keys = ["model", "train_combo", "method", "test_dataset"]
    scores = metric_rows(metrics, metric).groupby(keys, sort=True)["value"].mean()
    return scores.rename("score").reset_index()


def ordered_methods(methods: Iterable[str]) -> list[str]:
    """The distinct methods in ``core.methods.METHOD_ORDER``, unknown ones after them, sorted."""
    rank = {method: index for index, method in enumerate(METHOD_ORDER)}
    return sorted(set(methods), key=lambda method: (rank.get(method, len(rank)), method))


def _cell(value: object, digits: int) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table of a frame (index included when it is named)."""
    frame = table.reset_index() if any(table.index.names) else table
    header = [str(column) for column in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(value, digits) for value in row) + " |")
    return "\n".join(lines) + "\n"


def with_metric(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The table with a first column ``metric`` naming the metric of its values."""
    return table.assign(metric=metric)[["metric", *table.columns]]
