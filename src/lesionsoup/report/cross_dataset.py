"""Cross-dataset figures: training combination x test set heatmaps, fine vs coarse training.

Each cell of a heatmap is a metric of one lesion, averaged over the models of
one method (default ``single``: the seeds and recipes of a combination).
Combinations are grouped by the annotation style of their members: all fine,
all coarse, or mixed.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lesionsoup.core.combos import combo_members
from lesionsoup.core.figures import save_figure
from lesionsoup.core.metrics import metric_label
from lesionsoup.report.tables import (
    metric_rows,
    model_scores,
    read_metrics,
    with_metric,
    write_csv,
)

STYLE_GROUPS: tuple[str, ...] = ("fine only", "coarse only", "mixed")


def heatmap_matrix(
    metrics: pd.DataFrame, lesion: str, metric: str = "ap", method: str = "single"
) -> pd.DataFrame:
    """Training combination (rows) x test set (columns): the metric, mean over models."""
    rows = metric_rows(metrics, metric)
    rows = rows[(rows["lesion"] == lesion) & (rows["method"] == method)]
    if rows.empty:
        raise ValueError(f"no {metric} values for lesion {lesion} and method {method}")
    return rows.pivot_table(
        index="train_combo", columns="test_dataset", values="value", aggfunc="mean", dropna=False
    ).sort_index()


def plot_heatmaps(
    metrics: pd.DataFrame, out: Path, metric: str = "ap", method: str = "single"
) -> dict[str, pd.DataFrame]:
    """One heatmap panel per lesion, values printed in the cells; returns the matrices."""
    lesions = [x for x in ("EX", "HE", "MA", "CWS") if x in set(metrics["lesion"])]
    lesions += sorted(set(metrics["lesion"]) - set(lesions))
    matrices = {lesion: heatmap_matrix(metrics, lesion, metric, method) for lesion in lesions}
    rows, columns = (
        max(len(m.index) for m in matrices.values()),
        max(len(m.columns) for m in matrices.values()),
    )
    fig, axes = plt.subplots(
        1,
        len(lesions),
        figsize=(1.2 + (0.75 * columns + 1.2) * len(lesions), 1.6 + 0.45 * rows),
        squeeze=False,
        layout="constrained",
    )
    for ax, (lesion, matrix) in zip(axes[0], matrices.items(), strict=True):
        image = ax.imshow(matrix.to_numpy(float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(matrix.columns)), matrix.columns, rotation=45, ha="right")
        ax.set_yticks(range(len(matrix.index)), matrix.index)
        for (row, column), value in np.ndenumerate(matrix.to_numpy(float)):
            if np.isfinite(value):
                colour = "black" if value > 0.6 else "white"
                ax.text(column, row, f"{value:.2f}", ha="center", va="center", color=colour)
        ax.set_title(lesion)
        ax.set_xlabel("test set")
        ax.spines[:].set_visible(False)
    axes[0][0].set_ylabel("training combination")
    label = metric_label(metric)
    fig.colorbar(image, ax=axes[0].tolist(), label=f"{label} ({method} models)", shrink=0.9)
    fig.suptitle(f"Cross-dataset {label}: training combination x test set")
    save_figure(fig, out, tight=False)
    return matrices


def style_group(combo: str, coarse: Collection[str]) -> str:
    """``fine only``, ``coarse only`` or ``mixed``, by the styles of a combination's members."""
    kinds = {member in coarse for member in combo_members(combo)}
    if kinds == {False}:
        return "fine only"
    return "coarse only" if kinds == {True} else "mixed"


def fine_coarse_table(
    metrics: pd.DataFrame, coarse: Collection[str], metric: str = "ap", method: str = "single"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per test set and style group: mean, std and count of the combinations' scores.

    A combination's score is its models' score (mean over lesions) averaged over its
    models; the second table holds those per-combination scores and their group.
    """
    scores = model_scores(metrics, metric)
    scores = scores[scores["method"] == method]
    if scores.empty:
        raise ValueError(f"no {method} models in the metrics table")
    per_combo = scores.groupby(["test_dataset", "train_combo"])["score"].mean().reset_index()
    per_combo["group"] = [style_group(c, coarse) for c in per_combo["train_combo"]]
    summary = per_combo.groupby(["test_dataset", "group"])["score"].agg(["mean", "std", "count"])
    summary = summary.reset_index().rename(columns={"count": "combinations"})
    summary["group"] = pd.Categorical(summary["group"], STYLE_GROUPS, ordered=True)
    return summary.sort_values(["test_dataset", "group"]).reset_index(drop=True), per_combo


def plot_fine_coarse(
    metrics: pd.DataFrame,
    coarse: Collection[str],
    out: Path,
    metric: str = "ap",
    method: str = "single",
) -> pd.DataFrame:
    """Per test set, the scores of fine-only, coarse-only and mixed training; returns the table."""
    summary, per_combo = fine_coarse_table(metrics, coarse, metric, method)
    tests = sorted(summary["test_dataset"].unique())
    fig, ax = plt.subplots(figsize=(3.5 + 1.3 * len(tests), 3.8))
    width = 0.8 / len(STYLE_GROUPS)
    hatches = ("", "//", "..")
    colours = ("#31688e", "#fde725", "#35b779")
    for offset, (group, hatch, colour) in enumerate(
        zip(STYLE_GROUPS, hatches, colours, strict=True)
    ):
        own = summary[summary["group"] == group].set_index("test_dataset").reindex(tests)
        x = np.arange(len(tests)) + (offset - 1) * width
        ax.bar(
            x,
            own["mean"],
            width,
            yerr=own["std"].fillna(0),
            label=group,
            color=colour,
            hatch=hatch,
            edgecolor="black",
            capsize=3,
        )
        points = per_combo[per_combo["group"] == group]
        positions = [x[tests.index(t)] for t in points["test_dataset"]]
        ax.scatter(positions, points["score"], color="black", s=10, zorder=3)
    ax.set_xticks(range(len(tests)), tests)
    ax.set_xlabel("test set")
    ax.set_ylabel(f"{metric_label(metric)}, mean over lesions")
    ax.set_ylim(0, 1)
    ax.legend(title="training data", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(
        f"Fine vs coarse annotations in training: {metric_label(metric)}\n"
        "(bars: mean ± sd over combinations)"
    )
    save_figure(fig, out)
    return summary


def report_cross_dataset(
    metrics_csv: Path | str,
    heatmap: Path | str,
    fine_coarse: Path | str,
    metric: str = "ap",
    method: str = "single",
    coarse: Collection[str] = ("RETLES",),
) -> None:
    """The heatmaps and the fine-vs-coarse figure of ``metrics.csv``, each with its table
    beside it (same name, ``.csv``): the numbers a reader quotes, and ``summary.md`` shows."""
    metrics = read_metrics(Path(metrics_csv))
    matrices = plot_heatmaps(metrics, Path(heatmap), metric, method)
    table = pd.concat(matrices, names=["lesion"])  # rows: lesion x combination; columns: tests
    write_csv(with_metric(table.reset_index(), metric), Path(heatmap).with_suffix(".csv"))
    summary = plot_fine_coarse(metrics, coarse, Path(fine_coarse), metric, method)
    write_csv(with_metric(summary, metric), Path(fine_coarse).with_suffix(".csv"))
