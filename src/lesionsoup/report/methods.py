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
from lesionsoup.evaluation.uncertainty import BASELINE, MEAN_OVER_LESIONS
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


def seed_noise_table(metrics: pd.DataFrame, metric: str = "ap") -> pd.DataFrame:
    """Per (combination, test set, method): its gain over the single models' mean, against
    the spread of the single models across seeds (``seed_sd``, with >= 2 seeds).

    ``beyond_seed_noise`` says whether the gain exceeds twice that spread: a difference
    smaller than the seeds' own would vanish on another draw of seeds.
    """
    scores = model_scores(metrics, metric)
    single = scores[scores["method"] == "single"].groupby(["train_combo", "test_dataset"])["score"]
    spread = single.agg(["mean", "std", "count"]).rename(
        columns={"mean": "single_mean", "std": "seed_sd", "count": "seeds"}
    )
    spread = spread[spread["seeds"] >= 2]
    methods = method_table(metrics, metric)
    joined = methods[methods["method"] != "single"].join(
        spread, on=["train_combo", "test_dataset"], how="inner"
    )
    joined["gain"] = joined["mean"] - joined["single_mean"]
    joined["gain_over_seed_sd"] = joined["gain"] / joined["seed_sd"]
    joined["beyond_seed_noise"] = joined["gain"].abs() > 2 * joined["seed_sd"]
    columns = ["train_combo", "test_dataset", "method", "seeds", "seed_sd", "gain"]
    return joined[[*columns, "gain_over_seed_sd", "beyond_seed_noise"]].reset_index(drop=True)


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


def method_errors(
    table: pd.DataFrame, intervals: pd.DataFrame, comparisons: pd.DataFrame, metric: str
) -> pd.DataFrame:
    """``method_table`` with each bar's error (``below``, ``above``) and significance mark.

    A method with one model in a (combination, test set) gets the 95% bootstrap
    interval of its mean over lesions (``metrics_ci.csv``) and a mark where its paired
    comparison with the single-model baseline is significant after Holm; a method with
    several models the sd over them, and no mark.
    """
    means = intervals[(intervals["metric"] == metric) & (intervals["lesion"] == MEAN_OVER_LESIONS)]
    baseline = comparisons["comparison"] == BASELINE  # not the named pairs
    mean_rows = comparisons[baseline & (comparisons["lesion"] == MEAN_OVER_LESIONS)]
    marked = mean_rows[mean_rows["significant"].astype(bool)]
    table = table.copy()
    single = _one_model_intervals(means).set_index(["train_combo", "test_dataset", "method"])
    keys = list(zip(table["train_combo"], table["test_dataset"], table["method"], strict=True))
    one = (table["models"] == 1).to_numpy()
    low = single["low"].reindex(keys).to_numpy()
    high = single["high"].reindex(keys).to_numpy()
    sd = table["std"].where(table["models"] >= 2).to_numpy()
    # the interval's ends need not straddle the bar (metrics.csv's value, 2000 bins; the
    # interval's resamples, 200): a bar then gets no error on that side
    table["below"] = np.where(one, np.maximum(table["mean"] - low, 0), sd)
    table["above"] = np.where(one, np.maximum(high - table["mean"], 0), sd)
    models = single["model"].reindex(keys)
    significant = set(zip(marked["model"], marked["test_dataset"], strict=True))
    table["significant"] = [
        bool(is_one) and (model, test) in significant
        for is_one, model, test in zip(one, models, table["test_dataset"], strict=True)
    ]
    return table


def _one_model_intervals(means: pd.DataFrame) -> pd.DataFrame:
    """The interval rows of methods with one model per (combination, test set)."""
    keys = ["train_combo", "test_dataset", "method"]
    counts = means.groupby(keys)["model"].transform("count")
    return means[counts == 1][[*keys, "model", "low", "high"]]


def _with_errors(
    table: pd.DataFrame,
    intervals: pd.DataFrame | None,
    comparisons: pd.DataFrame | None,
    metric: str,
) -> tuple[pd.DataFrame, str]:
    """``table`` with its error bars and marks, and what the bars are, in words."""
    if intervals is not None and comparisons is not None:
        bars = "error bars: 95% bootstrap interval over test images (one model) or sd over models"
        return method_errors(table, intervals, comparisons, metric), bars
    sd = table["std"].where(table["models"] >= 2)
    return table.assign(below=sd, above=sd, significant=False), "error bars: sd over models"


HATCHES = ["", "//", "..", "xx", "\\\\", "oo", "--", "++", "**"]


def _draw_bars(ax: plt.Axes, own: pd.DataFrame, combos: list[str], methods: list[str]) -> None:
    """One test set's bars: each method's combinations, error bars and significance marks."""
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.95, len(methods)))
    width = 0.85 / len(methods)
    for index, method in enumerate(methods):
        rows = own.reindex([(combo, method) for combo in combos])
        x = np.arange(len(combos)) + (index - (len(methods) - 1) / 2) * width
        ax.bar(
            x,
            rows["mean"],
            width,
            yerr=np.vstack([rows["below"], rows["above"]]),
            color=colours[index],
            hatch=HATCHES[index % len(HATCHES)],
            edgecolor="black",
            linewidth=0.5,
            capsize=2,
            label=method,
        )
        for position, row in zip(x, rows.itertuples(), strict=True):
            if row.significant is True:
                top = row.mean + (0 if np.isnan(row.above) else row.above)
                ax.text(position, min(top + 0.02, 0.97), "*", ha="center", fontsize=11)


def plot_method_comparison(
    metrics: pd.DataFrame,
    out: Path,
    metric: str = "ap",
    intervals: pd.DataFrame | None = None,
    comparisons: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per test set, each combination's methods as bars with error bars (``method_errors``;
    sd over models only, without the uncertainty tables) and significance marks."""
    table, bars = _with_errors(method_table(metrics, metric), intervals, comparisons, metric)
    tests = sorted(table["test_dataset"].unique())
    combos = sorted(table["train_combo"].unique())
    methods = ordered_methods(table["method"])
    fig, axes = plt.subplots(
        len(tests),
        1,
        figsize=(max(6.0, 2.5 + 0.35 * len(methods) * len(combos)), 2.4 * len(tests)),
        squeeze=False,
        sharex=True,
    )
    for ax, test in zip(axes[:, 0], tests, strict=True):
        own = table[table["test_dataset"] == test].set_index(["train_combo", "method"])
        _draw_bars(ax, own, combos, methods)
        ax.set_ylabel(f"{metric_label(metric)}\n(test {test})")
        ax.set_ylim(0, 1)
    axes[-1, 0].set_xticks(range(len(combos)), combos, rotation=30, ha="right")
    axes[-1, 0].set_xlabel("training combination")
    axes[0, 0].legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(
        f"Methods compared: {metric_label(metric)}, mean over lesions\n({bars}; "
        "*: differs from the single-model baseline, paired bootstrap, Holm)",
        fontsize="medium",
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


def significance_table(comparisons: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """The comparisons of the mean over lesions, significant ones first; ``comparison``:
    ``baseline`` or the name of a configured pair."""
    table = comparisons[comparisons["lesion"] == MEAN_OVER_LESIONS]
    columns = ["comparison", "metric", "train_combo", "method", "test_dataset"]
    columns += ["difference", "low", "high"]
    table = table[[*columns, "p_holm", "significant"]].copy()
    table["significant"] = np.where(table["significant"], f"yes (p < {alpha:g})", "no")
    return table.sort_values(["significant", "p_holm"], ascending=[False, True])


def report_methods(
    metrics_csv: Path | str,
    costs_csv: Path | str,
    comparison: Path | str,
    cost_gain: Path | str,
    metric: str = "ap",
    intervals_csv: Path | str | None = None,
    comparisons_csv: Path | str | None = None,
    significance: Path | str | None = None,
    alpha: float = 0.05,
) -> None:
    """The method comparison and cost-vs-gain figures, each with its table beside it
    (``.csv``), and the significance table of the comparisons."""
    metrics = read_metrics(Path(metrics_csv))
    intervals = pd.read_csv(intervals_csv) if intervals_csv else None
    comparisons = pd.read_csv(comparisons_csv) if comparisons_csv else None
    if comparisons is not None and significance is not None:
        write_csv(significance_table(comparisons, alpha), Path(significance))
    write_csv(
        with_metric(seed_noise_table(metrics, metric), metric),
        Path(comparison).with_name("seed_noise.csv"),
    )
    table = plot_method_comparison(metrics, Path(comparison), metric, intervals, comparisons)
    write_csv(with_metric(table, metric), Path(comparison).with_suffix(".csv"))
    gains = plot_cost_gain(metrics, read_costs(Path(costs_csv)), Path(cost_gain), metric)
    write_csv(with_metric(gains, metric), Path(cost_gain).with_suffix(".csv"))
