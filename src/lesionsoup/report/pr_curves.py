"""Precision-recall curves of the best models on each test set, from evaluation histograms;
each legend entry gives the model's metric on the lesion with its bootstrap interval."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from lesionsoup.core.atomic import write_csv
from lesionsoup.core.figures import panel_figure_size, save_figure
from lesionsoup.core.metrics import SegmentationHistograms, metric_label, pr_curve
from lesionsoup.evaluation.evaluate import aggregated_evaluations, load_evaluation, read_metrics
from lesionsoup.evaluation.replicates import Replicates
from lesionsoup.report.intervals import (
    check_metric,
    confidence_text,
    interval_text,
    read_replicates,
    replicate_errors,
)
from lesionsoup.report.tables import metric_rows, model_scores


def best_models(metrics: pd.DataFrame, top: int = 3, metric: str = "ap") -> pd.DataFrame:
    """The ``top`` models of each test set by score (mean over lesions), best first."""
    scores = model_scores(metrics, metric).sort_values(
        ["test_dataset", "score", "model"], ascending=[True, False, True]
    )
    return scores.groupby("test_dataset").head(top).reset_index(drop=True)


def histograms_by_model(
    evaluations: Iterable[Path],
) -> dict[tuple[str, str], SegmentationHistograms]:
    """(model, test set) -> histograms, from evaluation files."""
    found = {}
    for path in evaluations:
        result = load_evaluation(path)
        key = (str(Path(result["model"])), result["test_dataset"])
        found[key] = SegmentationHistograms.from_dict(result["histograms"])
    return found


def lesion_values(metrics: pd.DataFrame, metric: str) -> dict[tuple[str, str, str], float]:
    """(model, test set, lesion) -> the metric's value in ``metrics.csv``."""
    rows = metric_rows(metrics, metric)
    rows = rows.assign(model=[str(Path(model)) for model in rows["model"]])
    return rows.groupby(["model", "test_dataset", "lesion"])["value"].mean().to_dict()


def _missing_evaluations(
    chosen: pd.DataFrame, histograms: dict[tuple[str, str], SegmentationHistograms]
) -> None:
    missing = [
        (m, t)
        for m, t in zip(chosen["model"], chosen["test_dataset"], strict=True)
        if (str(Path(m)), t) not in histograms
    ]
    if missing:
        raise ValueError(f"no evaluation file for (model, test set) {missing[:3]}")


def plot_pr_curves(
    metrics: pd.DataFrame,
    evaluations: Iterable[Path],
    replicates: Replicates,
    out: Path,
    top: int = 3,
    metric: str = "ap",
) -> pd.DataFrame:
    """Rows: test sets; columns: lesions; a curve per best model, its legend giving the
    model's ``metric`` on that lesion and its bootstrap interval (``replicates``, of the
    same metric). Returns the models drawn with those values and intervals."""
    check_metric(replicates, metric)
    chosen, label = best_models(metrics, top, metric), metric_label(metric)
    histograms, values = histograms_by_model(evaluations), lesion_values(metrics, metric)
    _missing_evaluations(chosen, histograms)
    tests = sorted(chosen["test_dataset"].unique())
    lesions = list(histograms[str(Path(chosen["model"].iloc[0])), tests[0]].lesions)
    fig, axes = plt.subplots(
        len(tests),
        len(lesions),
        figsize=panel_figure_size(len(tests), len(lesions), panel_aspect=0.95, extra=0.7),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    styles = ("-", "--", ":", "-.")
    drawn = []
    for row, test in enumerate(tests):
        own = chosen[chosen["test_dataset"] == test]
        for rank, item in enumerate(own.itertuples(index=False)):
            for column, lesion in enumerate(lesions):
                histogram = histograms[str(Path(item.model)), test][lesion]
                value = values.get((str(Path(item.model)), test, lesion.value), math.nan)
                ends = replicates.interval(replicates.mean_of([item.model], test, lesion.value))
                drawn.append((item.model, test, lesion.value, metric, value, *ends))
                if histogram.positive_pixels == 0:
                    continue
                curve = pr_curve(histogram)
                axes[row, column].plot(
                    curve.recall,
                    curve.precision,
                    linestyle=styles[rank % len(styles)],
                    color=plt.get_cmap("viridis")(rank / max(1, top)),
                    label=f"{item.method} {item.train_combo}\n{label} {value:.2f} "
                    f"{interval_text(*ends)}",
                )
        for column, lesion in enumerate(lesions):
            _finish_panel(axes[row, column], f"{lesion.value} on {test}")
        axes[row, 0].set_ylabel("precision")
    for ax in axes[-1]:
        ax.set_xlabel("recall")
    fig.suptitle(
        f"Precision-recall curves of the {top} best models per test set by {label}\n"
        f"(legend: {label} on the lesion, {confidence_text(replicates)} bootstrap interval "
        "over test images)"
    )
    save_figure(fig, out)
    columns = ["model", "test_dataset", "lesion", "metric", "value", "low", "high"]
    return pd.DataFrame(drawn, columns=columns)


def _finish_panel(ax: plt.Axes, title: str) -> None:
    ax.set_title(title, fontsize="medium")
    if ax.lines:
        ax.legend(fontsize="x-small", loc="best", framealpha=0.7, edgecolor="none")
    else:
        ax.text(0.5, 0.5, "no positive pixels", ha="center", va="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)


def report_pr_curves(
    metrics_csv: Path | str,
    notes: Path | str,
    replicates_npz: Path | str,
    out: Path | str,
    top: int = 3,
    metric: str = "ap",
) -> None:
    """The PR-curve figure of ``metrics.csv``'s best models, and the models drawn beside it
    (``.csv``); ``notes`` (its conventions file) lists the evaluation files with the
    histograms, ``replicates_npz`` holds the bootstrap replicates of ``metric``."""
    metrics = read_metrics(Path(metrics_csv))
    evaluations = aggregated_evaluations(Path(notes))
    replicates = read_replicates(replicates_npz, metric)
    with replicate_errors(replicates_npz):
        drawn = plot_pr_curves(metrics, evaluations, replicates, Path(out), top, metric)
    write_csv(drawn, Path(out).with_suffix(".csv"))
