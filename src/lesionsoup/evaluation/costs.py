"""What each evaluated model cost: training, merging and inference seconds.

``costs.csv`` contract, one row per evaluated model::

    model, method, train_combo, compute_seconds,
    training_seconds, merging_seconds, inference_seconds, source

``compute_seconds`` is the sum of the three parts. Training and merging are measured
(``source`` ``measured``) where every job behind the model left its Snakemake benchmark
record: the wall time of those jobs (``evaluation.job_costs``). Otherwise (``sidecar``) they are
the times the code wrote into the sidecars: training a checkpoint's own
``compute_seconds``, else ``wall_seconds``; for a merged model its sidecar's
``training_seconds``, the ingredients' training; for an ensemble its members'
training; merging a merged model's ``merge_seconds + selection_seconds``. Inference is
the ``seconds`` of its evaluations, over all test sets, either way: an evaluation job that
copies a stored result (``evaluation.per_model``) measures the copy, the file keeps the time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from lesionsoup.core.atomic import write_csv
from lesionsoup.core.checkpoint import SUFFIX, load_metadata
from lesionsoup.evaluation.evaluate import aggregated_evaluations, load_evaluation, read_metrics
from lesionsoup.evaluation.job_costs import MEASURED, SIDECAR, measured_cost

COST_COLUMNS = (
    "model",
    "method",
    "train_combo",
    "compute_seconds",
    "training_seconds",
    "merging_seconds",
    "inference_seconds",
    "source",
)


def _training_seconds(metadata: Mapping[str, Any]) -> float:
    """A merged checkpoint's ``training_seconds`` (its ``compute_seconds`` adds the merge);
    a trained one's ``compute_seconds``, else ``wall_seconds``."""
    if "training_seconds" in metadata:
        return float(metadata["training_seconds"])
    return float(metadata.get("compute_seconds", metadata.get("wall_seconds", 0.0)))


def model_cost(model: Path) -> tuple[float, float]:
    """Training and merging seconds of a checkpoint, merged checkpoint or ensemble file."""
    model = Path(model)
    if model.suffix == SUFFIX:
        metadata = load_metadata(model)
        merging = float(metadata.get("merge_seconds", 0.0)) + float(
            metadata.get("selection_seconds", 0.0)
        )
        return _training_seconds(metadata), merging
    from lesionsoup.inference.predictor import read_ensemble

    members, _, _ = read_ensemble(model)
    parts = [model_cost(member) for member in members]
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def cost_table(metrics: pd.DataFrame, evaluations: Iterable[Path]) -> pd.DataFrame:
    """``costs.csv`` of every model in ``metrics``: from the jobs' benchmark records where
    they all exist, else from sidecars; inference from the evaluation files."""
    inference: dict[str, float] = {}
    for path in evaluations:
        result = load_evaluation(path)
        model = str(Path(result["model"]))
        inference[model] = inference.get(model, 0.0) + float(result.get("seconds", 0.0))
    models = metrics[["model", "method", "train_combo"]].drop_duplicates().sort_values("model")
    rows = []
    for model, method, combo in models.itertuples(index=False):
        measured = measured_cost(Path(model))
        training, merging = measured or model_cost(Path(model))
        seconds = inference.get(str(Path(model)), 0.0)
        total = training + merging + seconds
        source = SIDECAR if measured is None else MEASURED
        rows.append((model, method, combo, total, training, merging, seconds, source))
    return pd.DataFrame(rows, columns=list(COST_COLUMNS))


def read_costs(path: Path) -> pd.DataFrame:
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"model": str, "method": str, "train_combo": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"{path}: not a readable cost table ({error})") from None
    missing = [c for c in (*COST_COLUMNS[:4], "source") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: cost table lacks columns {missing}")
    return table


def write_costs(metrics_csv: Path | str, notes: Path | str, out: Path | str) -> pd.DataFrame:
    """``costs.csv`` of the models in ``metrics.csv``; ``notes`` (its conventions file)
    lists the evaluation files, whose seconds are the inference cost."""
    table = cost_table(read_metrics(Path(metrics_csv)), aggregated_evaluations(Path(notes)))
    write_csv(table, Path(out))
    return table
