"""Method comparison (single, ensemble, SWA, soups) and what each costs for what it gains.

``costs.csv`` contract, one row per evaluated model::

    model, method, train_combo, compute_seconds,
    training_seconds, merging_seconds, inference_seconds

``compute_seconds`` is the sum of the three parts: training (a checkpoint's own
``compute_seconds``, else ``wall_seconds``; for a merged model its sidecar's
``compute_seconds``, the ingredients' training; for an ensemble its members'
training), merging (a merged model's ``merge_seconds + selection_seconds``) and
inference (the ``seconds`` of its evaluations, over all test sets).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import ScalarFormatter

from lesionsoup.core.checkpoint import SUFFIX, load_metadata
from lesionsoup.core.figures import save_figure
from lesionsoup.core.metrics import metric_label
from lesionsoup.evaluation.evaluate import aggregated_evaluations, load_evaluation
from lesionsoup.report.tables import (
    model_scores,
    ordered_methods,
    read_metrics,
    with_metric,
    write_csv,
)

COST_COLUMNS = (
    "model",
    "method",
    "train_combo",
    "compute_seconds",
    "training_seconds",
    "merging_seconds",
    "inference_seconds",
)


def _training_seconds(metadata: Mapping[str, Any]) -> float:
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
    """``costs.csv`` of every model in ``metrics``, from sidecars and evaluation files."""
    inference: dict[str, float] = {}
    for path in evaluations:
        result = load_evaluation(path)
        model = str(Path(result["model"]))
        inference[model] = inference.get(model, 0.0) + float(result.get("seconds", 0.0))
    models = metrics[["model", "method", "train_combo"]].drop_duplicates().sort_values("model")
    rows = []
    for model, method, combo in models.itertuples(index=False):
        training, merging = model_cost(Path(model))
        seconds = inference.get(str(Path(model)), 0.0)
        total = training + merging + seconds
        rows.append((model, method, combo, total, training, merging, seconds))
    return pd.DataFrame(rows, columns=list(COST_COLUMNS))


def read_costs(path: Path) -> pd.DataFrame:
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"model": str, "method": str, "train_combo": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"{path}: not a readable cost table ({error})") from None
    missing = [c for c in COST_COLUMNS[:4] if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: cost table lacks columns {missing}")
    return table


def method_table(metrics: pd.DataFrame, metric: str = "ap") -> pd.DataFrame:
    """Per (combination, test set, method): mean, sd and count of the models' scores, and best."""
    scores = model_scores(metrics, metric)
    grouped = scores.groupby(["train_combo", "test_dataset", "method"])["score"]
    table = grouped.agg(["mean", "std", "count", "max"]).reset_index()
    return table.rename(columns={"count": "models", "max": "best"})


def cost_gain_table(metrics: pd.DataFrame, costs: pd.DataFrame, metric: str = "ap") -> pd.DataFrame:
    """Per method: score gained over the best single model, and compute spent.

    For each (combination, test set) the gain of a method is its models' mean
    score minus the best single model's score there; the table gives the mean
    and sd of the gains over those pairs, and the method's mean compute seconds
    per model. Pairs without a single model are left out.
    """
    methods = method_table(metrics, metric)
    best_single = (
        methods[methods["method"] == "single"]
        .set_index(["train_combo", "test_dataset"])["best"]
        .rename("best_single")
    )
    if best_single.empty:
        raise ValueError("the metrics table has no single models to compare with")
    joined = methods.join(best_single, on=["train_combo", "test_dataset"], how="inner")
    joined["gain"] = joined["mean"] - joined["best_single"]
    gains = joined.groupby("method")["gain"].agg(["mean", "std", "count"])
    gains = gains.rename(columns={"mean": "gain", "std": "gain_sd", "count": "pairs"})
    compute = costs.groupby("method")["compute_seconds"].mean().rename("compute_seconds")
    table = gains.join(compute, how="left").reset_index()
    order = ordered_methods(table["method"])
    return table.set_index("method").loc[order].reset_index()


def plot_method_comparison(metrics: pd.DataFrame, out: Path, metric: str = "ap") -> pd.DataFrame:
    """Per test set, each combination's methods as bars (sd over models where there are >= 2)."""
    table = method_table(metrics, metric)
    tests = sorted(table["test_dataset"].unique())
    combos = sorted(table["train_combo"].unique())
    methods = ordered_methods(table["method"])
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.95, len(methods)))
    hatches = ["", "//", "..", "xx", "\\\\", "oo", "--", "++", "**"]
    fig, axes = plt.subplots(
        len(tests),
        1,
        figsize=(max(6.0, 2.5 + 0.35 * len(methods) * len(combos)), 2.4 * len(tests)),
        squeeze=False,
        sharex=True,
    )
    width = 0.85 / len(methods)
    for ax, test in zip(axes[:, 0], tests, strict=True):
        own = table[table["test_dataset"] == test].set_index(["train_combo", "method"])
        for index, method in enumerate(methods):
            rows = own.reindex([(combo, method) for combo in combos])
            sd = rows["std"].where(rows["models"] >= 2)  # NaN: no error bar
            ax.bar(
                np.arange(len(combos)) + (index - (len(methods) - 1) / 2) * width,
                rows["mean"],
                width,
                yerr=sd,
                color=colours[index],
                hatch=hatches[index % len(hatches)],
                edgecolor="black",
                linewidth=0.5,
                capsize=2,
                label=method,
            )
        ax.set_ylabel(f"{metric_label(metric)}\n(test {test})")
        ax.set_ylim(0, 1)
    axes[-1, 0].set_xticks(range(len(combos)), combos, rotation=30, ha="right")
    axes[-1, 0].set_xlabel("training combination")
    axes[0, 0].legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(
        f"Methods compared: {metric_label(metric)}, mean over lesions\n(error bars: sd over models)"
    )
    save_figure(fig, out)
    return table


def plot_cost_gain(
    metrics: pd.DataFrame, costs: pd.DataFrame, out: Path, metric: str = "ap"
) -> pd.DataFrame:
    """Score gained over the best single model against compute seconds, one point per method."""
    table = cost_gain_table(metrics, costs, metric)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    markers = "osD^v<>pP*"
    for index, row in table.iterrows():
        ax.errorbar(
            row["compute_seconds"],
            row["gain"],
            yerr=0 if np.isnan(row["gain_sd"]) else row["gain_sd"],
            marker=markers[index % len(markers)],
            color="black",
            markerfacecolor="white" if index % 2 else "black",
            linestyle="none",
            capsize=3,
        )
        ax.annotate(
            row["method"],
            (row["compute_seconds"], row["gain"]),
            xytext=(5, 4),
            textcoords="offset points",
        )
    ax.axhline(0, color="0.5", linewidth=0.8, linestyle="--")
    if (table["compute_seconds"] > 0).all():
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.margins(x=0.15)
    ax.set_xlabel("compute per model (s): training + merging + inference")
    ax.set_ylabel(f"{metric_label(metric)} gained over the best single model")
    ax.set_title("Cost vs gain of each method")
    ax.grid(alpha=0.3)
    save_figure(fig, out)
    return table


def write_costs(metrics_csv: Path | str, notes: Path | str, out: Path | str) -> pd.DataFrame:
    """``costs.csv`` of the models in ``metrics.csv``; ``notes`` (its conventions file)
    lists the evaluation files, whose seconds are the inference cost."""
    table = cost_table(read_metrics(Path(metrics_csv)), aggregated_evaluations(Path(notes)))
    write_csv(table, Path(out))
    return table


def report_methods(
    metrics_csv: Path | str,
    costs_csv: Path | str,
    comparison: Path | str,
    cost_gain: Path | str,
    metric: str = "ap",
) -> None:
    """The method comparison and cost-vs-gain figures, each with its table beside it (``.csv``)."""
    metrics = read_metrics(Path(metrics_csv))
    table = plot_method_comparison(metrics, Path(comparison), metric)
    write_csv(with_metric(table, metric), Path(comparison).with_suffix(".csv"))
    gains = plot_cost_gain(metrics, read_costs(Path(costs_csv)), Path(cost_gain), metric)
    write_csv(with_metric(gains, metric), Path(cost_gain).with_suffix(".csv"))
