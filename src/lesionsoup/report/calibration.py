"""Reliability diagrams: per test set and lesion, the fraction of positive pixels against
the mean predicted probability in each calibration bin (``core.metrics.reliability``), for
the best model of each of a handful of methods, from the evaluations' pooled histograms;
each legend entry gives the model's expected calibration error with its bootstrap interval
(``metrics_ci.csv``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from lesionsoup.core.atomic import write_csv
from lesionsoup.core.figures import panel_figure_size, save_figure
from lesionsoup.core.metrics import LesionHistogram, SegmentationHistograms, reliability
from lesionsoup.evaluation.evaluate import aggregated_evaluations, read_metrics
from lesionsoup.report.intervals import interval_text
from lesionsoup.report.pr_curves import histograms_by_model, lesion_values
from lesionsoup.report.tables import model_scores, ordered_methods

#: Methods drawn at most, the first in ``core.methods.METHOD_ORDER`` (single, ensemble, SWA, soups).
METHODS_DRAWN = 5
DRAWN_COLUMNS = ("model", "method", "test_dataset", "lesion", "ece", "low", "high")


def calibration_models(
    metrics: pd.DataFrame, metric: str = "ap", methods: int = METHODS_DRAWN
) -> pd.DataFrame:
    """Per test set, the best model (by ``metric``, mean over lesions) of each of the first
    ``methods`` methods in the report's order."""
    scores = model_scores(metrics, metric).sort_values(
        ["test_dataset", "method", "score", "model"], ascending=[True, True, False, True]
    )
    best = scores.groupby(["test_dataset", "method"]).head(1)
    kept = ordered_methods(best["method"])[:methods]
    rank = {method: index for index, method in enumerate(kept)}
    best = best[best["method"].isin(kept)]
    order = best.assign(rank=best["method"].map(rank)).sort_values(["test_dataset", "rank"])
    return order.drop(columns="rank").reset_index(drop=True)


def ece_intervals(
    intervals: pd.DataFrame | None,
) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(model, test set, lesion) -> the ECE's bootstrap interval of ``metrics_ci.csv``."""
    if intervals is None:
        return {}
    rows = intervals[intervals["metric"] == "ece"]
    return {
        (str(Path(m)), t, lesion): (low, high)
        for m, t, lesion, low, high in zip(
            rows["model"],
            rows["test_dataset"],
            rows["lesion"],
            rows["low"],
            rows["high"],
            strict=True,
        )  # fmt: skip
    }


def _draw(ax: plt.Axes, histogram: LesionHistogram, label: str, rank: int) -> None:
    points = reliability(histogram)
    occupied = points.pixels > 0
    ax.plot(
        points.confidence[occupied],
        points.accuracy[occupied],
        marker="o",
        markersize=3,
        color=plt.get_cmap("tab10")(rank % 10),
        label=label,
    )


def _finish_panel(ax: plt.Axes, title: str) -> None:
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_title(title, fontsize="medium")
    if len(ax.lines) > 1:
        ax.legend(fontsize="x-small", loc="best", framealpha=0.7, edgecolor="none")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)


def plot_reliability(
    metrics: pd.DataFrame,
    histograms: Mapping[tuple[str, str], SegmentationHistograms],
    out: Path,
    intervals: pd.DataFrame | None = None,
    metric: str = "ap",
) -> pd.DataFrame:
    """Rows: test sets; columns: lesions; one curve per method (``calibration_models``), its
    legend giving the model's ECE on the lesion (``metrics.csv``) and its interval
    (``intervals``, ``metrics_ci.csv``). Returns the curves drawn with those values."""
    chosen = calibration_models(metrics, metric)
    eces, bounds = lesion_values(metrics, "ece"), ece_intervals(intervals)
    missing = [(m, t) for m, t in zip(chosen["model"], chosen["test_dataset"], strict=True)
               if (str(Path(m)), t) not in histograms]  # fmt: skip
    if missing:
        raise ValueError(f"no evaluation file for (model, test set) {missing[:3]}")
    tests = sorted(chosen["test_dataset"].unique())
    lesions = list(histograms[str(Path(chosen["model"].iloc[0])), tests[0]].lesions)
    size = panel_figure_size(len(tests), len(lesions), panel_aspect=0.95, extra=0.5)
    fig, axes = plt.subplots(len(tests), len(lesions), squeeze=False, sharex=True, sharey=True,
                             figsize=size)  # fmt: skip
    drawn = []
    for row, test in enumerate(tests):
        own = chosen[chosen["test_dataset"] == test].itertuples(index=False)
        for rank, item in enumerate(own):
            model = str(Path(item.model))
            for column, lesion in enumerate(lesions):
                key = (model, test, lesion.value)
                value, ends = eces.get(key, math.nan), bounds.get(key, (math.nan, math.nan))
                drawn.append((item.model, item.method, test, lesion.value, value, *ends))
                text = f"{item.method}: ECE {value:.3f} {interval_text(*ends, digits=3)}"
                _draw(axes[row, column], histograms[model, test][lesion], text, rank)
        for column, lesion in enumerate(lesions):
            _finish_panel(axes[row, column], f"{lesion.value} on {test}")
        axes[row, 0].set_ylabel("fraction positive")
    for ax in axes[-1]:
        ax.set_xlabel("mean predicted probability")
    fig.suptitle("Reliability of the best model of each method (dotted: perfect calibration)")
    save_figure(fig, out)
    return pd.DataFrame(drawn, columns=list(DRAWN_COLUMNS))


def report_reliability(
    metrics_csv: Path | str,
    notes: Path | str,
    intervals_csv: Path | str,
    out: Path | str,
    metric: str = "ap",
) -> None:
    """The reliability figure of ``metrics.csv``'s evaluations (``notes``: its conventions
    file) and the curves drawn beside it (``.csv``), ECE intervals from ``intervals_csv``."""
    metrics = read_metrics(Path(metrics_csv))
    histograms = histograms_by_model(aggregated_evaluations(Path(notes)))
    intervals = pd.read_csv(intervals_csv)
    drawn = plot_reliability(metrics, histograms, Path(out), intervals, metric)
    write_csv(drawn, Path(out).with_suffix(".csv"))
