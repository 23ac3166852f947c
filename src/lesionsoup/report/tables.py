"""Reading ``metrics.csv`` and the tables every figure is drawn from.

A model's *score* on a test set is a metric averaged over the lesions that
have a value there (a lesion without positives has NaN AUPR and is left out).
Every table written beside a figure names its metric in a first ``metric``
column (``with_metric``), and every figure names it in its labels
(``lesionsoup.core.metrics.metric_label``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.methods import METHOD_ORDER
from lesionsoup.evaluation.evaluate import COLUMNS


def read_metrics(path: Path) -> pd.DataFrame:
    """The long metrics table, checked: its columns and numeric values."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={name: str for name in COLUMNS if name != "value"})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"{path}: not a readable metrics table ({error})") from None
    missing = [name for name in COLUMNS if name not in table.columns]
    if missing:
        raise ValueError(f"{path}: metrics table lacks columns {missing}")
    values = pd.to_numeric(table["value"], errors="coerce")
    bad = values.isna() & table["value"].notna()
    if bad.any():
        raise ValueError(f"{path}: non-numeric value {table['value'][bad].iloc[0]!r}")
    if table.empty:
        raise ValueError(f"{path}: metrics table has no rows")
    return table.assign(value=values)


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


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """Write a table atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, table.to_csv(index=False).encode())
