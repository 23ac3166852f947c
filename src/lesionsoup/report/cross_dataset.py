"""Cross-dataset figures: training combination x test set heatmaps, fine vs coarse training.

Each cell of a heatmap is a metric of one lesion, averaged over the models of
one method (default ``single``: the seeds and recipes of a combination), with
the percentile bootstrap interval of that mean over the test images: the mean
over the cell's models of each resample (``Replicates.mean_of``), all models of
a test set being resampled with the same draws. Combinations are grouped by the
annotation style of their members: all fine, all coarse, or mixed; a group's
interval is that of its mean over combinations, resample by resample.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize

from lesionsoup.core.atomic import write_csv
from lesionsoup.core.combos import combo_members
from lesionsoup.core.figures import (
    PAGE_WIDTH,
    AxisRange,
    data_range,
    figure_size,
    panel_grid,
    save_figure,
    wrap_label,
)
from lesionsoup.core.methods import SINGLE
from lesionsoup.core.metrics import metric_label
from lesionsoup.evaluation.evaluate import read_metrics
from lesionsoup.evaluation.replicates import Replicates
from lesionsoup.evaluation.statistics import finite_mean
from lesionsoup.evaluation.uncertainty import MEAN_OVER_LESIONS
from lesionsoup.report.intervals import (
    check_metric,
    confidence_text,
    interval_text,
    read_replicates,
    replicate_errors,
)
from lesionsoup.report.tables import metric_rows, model_scores, with_metric

STYLE_GROUPS: tuple[str, ...] = ("fine only", "coarse only", "mixed")
#: The ends of an interval, as table columns: ``<test set> low`` in the heatmap table,
#: ``low`` in the fine-vs-coarse one.
ENDS: tuple[str, ...] = ("low", "high")


def _method_rows(metrics: pd.DataFrame, lesion: str, metric: str, method: str) -> pd.DataFrame:
    rows = metric_rows(metrics, metric)
    rows = rows[(rows["lesion"] == lesion) & (rows["method"] == method)]
    if rows.empty:
        raise ValueError(f"no {metric} values for lesion {lesion} and method {method}")
    return rows


def heatmap_matrix(
    metrics: pd.DataFrame, lesion: str, metric: str = "ap", method: str = SINGLE
) -> pd.DataFrame:
    """Training combination (rows) x test set (columns): the metric, mean over models."""
    return (
        _method_rows(metrics, lesion, metric, method)
        .pivot_table(
            index="train_combo",
            columns="test_dataset",
            values="value",
            aggfunc="mean",
            dropna=False,
        )
        .sort_index()
    )


def heatmap_table(
    metrics: pd.DataFrame,
    replicates: Replicates,
    lesion: str,
    metric: str = "ap",
    method: str = SINGLE,
) -> pd.DataFrame:
    """``heatmap_matrix`` with, after each test set's column, its cells' interval ends
    (``<test> low``, ``<test> high``): the interval of the mean over the cell's models."""
    matrix = heatmap_matrix(metrics, lesion, metric, method)
    check_metric(replicates, metric)
    models = _method_rows(metrics, lesion, metric, method).groupby(["train_combo", "test_dataset"])
    ends = {end: pd.DataFrame(np.nan, matrix.index, matrix.columns) for end in ENDS}
    for (combo, test), names in models["model"].unique().items():
        resampled = replicates.mean_of(list(names), test, lesion)
        for end, value in zip(ENDS, replicates.interval(resampled), strict=True):
            ends[end].loc[combo, test] = value
    columns = {}
    for test in matrix.columns:
        columns[test] = matrix[test]
        columns |= {f"{test} {end}": ends[end][test] for end in ENDS}
    return pd.DataFrame(columns).rename_axis(columns=None)


def _draw_cells(
    ax: plt.Axes, table: pd.DataFrame, tests: Sequence[str], norm: Normalize
) -> plt.AxesImage:
    """One lesion's panel: the colour of each cell's value, the value, its interval below."""
    values = table[list(tests)].to_numpy(float)
    image = ax.imshow(values, cmap="viridis", norm=norm, aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        if not np.isfinite(value):
            continue
        colour = "black" if norm(value) > 0.6 else "white"
        test = tests[column]
        interval = interval_text(*(table[f"{test} {end}"].iloc[row] for end in ENDS))
        ax.text(column, row - 0.14, f"{value:.2f}", ha="center", va="center", color=colour,
                fontsize=6.5)  # fmt: skip
        ax.text(column, row + 0.22, interval, ha="center", va="center", color=colour, fontsize=4.5)
    ax.set_xticks(range(len(tests)), tests, rotation=45, ha="right")
    ax.set_yticks(range(len(table.index)), [wrap_label(str(c)) for c in table.index])
    ax.spines[:].set_visible(False)
    return image


def _drawn_table(table: pd.DataFrame, combos: Sequence[str], tests: Sequence[str]) -> pd.DataFrame:
    """``table`` on the figure's common rows and columns (NaN where a lesion lacks them)."""
    columns = [f"{test}{suffix}" for test in tests for suffix in ("", *(f" {e}" for e in ENDS))]
    return table.reindex(index=list(combos), columns=columns)


#: Inches: a heatmap cell's width, a wrapped row label's line, the row labels' margin.
CELL_WIDTH, LABEL_LINE, LABEL_WIDTH = 0.5, 0.13, 1.25


def plot_heatmaps(
    metrics: pd.DataFrame,
    replicates: Replicates,
    out: Path,
    metric: str = "ap",
    method: str = SINGLE,
) -> dict[str, pd.DataFrame]:
    """One heatmap panel per lesion, each cell's value and interval printed in it;
    returns each lesion's ``heatmap_table``.

    The panels lie in a grid as wide as the page (``panel_grid``), all on the same rows
    (training combinations, labelled in the left column, wrapped at ``+``) and columns
    (test sets, labelled in the bottom row), with one colour bar; the colour scale runs
    from 0 to the greatest value rounded up (``data_range``), or to 1.
    """
    lesions = _lesion_order(metrics["lesion"])
    tables = {
        lesion: heatmap_table(metrics, replicates, lesion, metric, method) for lesion in lesions
    }
    tests = sorted({t for table in tables.values() for t in table.columns[:: 1 + len(ENDS)]})
    combos = sorted({combo for table in tables.values() for combo in table.index})
    drawn = {lesion: _drawn_table(table, combos, tests) for lesion, table in tables.items()}
    fig, axes = _heatmap_grid(len(lesions), len(tests), combos)
    values = [table[tests].to_numpy(float).ravel() for table in drawn.values()]
    scale = data_range(np.concatenate(values))
    norm = Normalize(*scale.limits)
    for ax, lesion in zip(axes.flat, lesions, strict=False):
        image = _draw_cells(ax, drawn[lesion], tests, norm)
        ax.set_title(lesion)
    _keep_outer_tick_labels(axes, len(lesions))
    _label_heatmaps(fig, axes, image, scale, replicates, metric, method)
    save_figure(fig, out, tight=False)
    return tables


def _lesion_order(lesions: Iterable[str]) -> list[str]:
    """The lesions present: EX, HE, MA, CWS in that order, then any others sorted."""
    present = set(lesions)
    known = [x for x in ("EX", "HE", "MA", "CWS") if x in present]
    return known + sorted(present - set(known))


def _heatmap_grid(panels: int, tests: int, combos: Sequence[str]) -> tuple[plt.Figure, np.ndarray]:
    """The figure and its grid of ``panels`` heatmaps of ``tests`` columns, sharing both
    axes, each tall enough for the wrapped labels of ``combos``."""
    panel = CELL_WIDTH * tests + 0.3
    grid_rows, grid_columns = panel_grid(panels, PAGE_WIDTH - LABEL_WIDTH, panel)
    lines = sum(wrap_label(str(c)).count("\n") + 1 for c in combos)
    panel_height = max(LABEL_LINE * lines, 0.32 * len(combos)) + 0.25
    return plt.subplots(
        grid_rows,
        grid_columns,
        figsize=figure_size(grid_rows * panel_height + 1.6),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )


def _keep_outer_tick_labels(axes: np.ndarray, used: int) -> None:
    """Remove the grid's panels past the first ``used``; tick labels only on the left
    column and the bottom row."""
    for ax in axes.flat[used:]:
        ax.remove()
    for row in axes:
        for ax in row[1:]:
            ax.tick_params(labelleft=False)
    for ax in axes[:-1].flat:
        ax.tick_params(labelbottom=False)


def _label_heatmaps(
    fig: plt.Figure,
    axes: np.ndarray,
    image: plt.AxesImage,
    scale: AxisRange,
    replicates: Replicates,
    metric: str,
    method: str,
) -> None:
    """The axis labels, the colour bar of ``image`` and the title of the heatmap figure."""
    fig.supylabel("training combination", fontsize="medium")
    fig.supxlabel("test set", fontsize="medium")
    label = metric_label(metric)
    scaled = f"; colour scale {scale.low:g}-{scale.high:g}, {scale.note}" if scale.note else ""
    fig.colorbar(image, ax=axes.ravel().tolist(), label=f"{label} ({method} models)", shrink=0.8)
    fig.suptitle(
        f"Cross-dataset {label}: training combination x test set\n(mean over {method} "
        f"models; below: {confidence_text(replicates)} bootstrap interval\nover test "
        f"images{scaled})"
    )


def style_group(combo: str, coarse: Collection[str]) -> str:
    """``fine only``, ``coarse only`` or ``mixed``, by the styles of a combination's members."""
    kinds = {member in coarse for member in combo_members(combo)}
    if kinds == {False}:
        return "fine only"
    return "coarse only" if kinds == {True} else "mixed"


def _group_interval(
    replicates: Replicates, test: str, combos: Sequence[Sequence[str]]
) -> tuple[float, float]:
    """The interval of a group's mean over its combinations (each the mean over its
    models, lesion ``mean``), from each resample's mean of those means."""
    per_combo = [replicates.mean_of(list(models), test, MEAN_OVER_LESIONS) for models in combos]
    return replicates.interval(finite_mean(np.stack(per_combo)))


def fine_coarse_table(
    metrics: pd.DataFrame,
    coarse: Collection[str],
    replicates: Replicates,
    metric: str = "ap",
    method: str = SINGLE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per test set and style group: mean, std and count of the combinations' scores, and
    the bootstrap interval (``low``, ``high``) of that mean.

    A combination's score is its models' score (mean over lesions) averaged over its
    models; the second table holds those per-combination scores, their models and group.
    """
    check_metric(replicates, metric)
    scores = model_scores(metrics, metric)
    scores = scores[scores["method"] == method]
    if scores.empty:
        raise ValueError(f"no {method} models in the metrics table")
    per_combo = scores.groupby(["test_dataset", "train_combo"]).agg(
        score=("score", "mean"), models=("model", list)
    )
    per_combo = per_combo.reset_index()
    per_combo["group"] = [style_group(c, coarse) for c in per_combo["train_combo"]]
    groups = per_combo.groupby(["test_dataset", "group"])
    summary = groups["score"].agg(mean="mean", std="std", combinations="count")
    ends = [_group_interval(replicates, test, own["models"]) for (test, _), own in groups]
    summary[list(ENDS)] = ends
    summary = summary.reset_index()
    summary["group"] = pd.Categorical(summary["group"], STYLE_GROUPS, ordered=True)
    return summary.sort_values(["test_dataset", "group"]).reset_index(drop=True), per_combo


def plot_fine_coarse(
    metrics: pd.DataFrame,
    coarse: Collection[str],
    replicates: Replicates,
    out: Path,
    metric: str = "ap",
    method: str = SINGLE,
) -> pd.DataFrame:
    """Per test set, the scores of fine-only, coarse-only and mixed training: bars, their
    bootstrap intervals and the combinations as dots; returns the table."""
    summary, per_combo = fine_coarse_table(metrics, coarse, replicates, metric, method)
    tests = sorted(summary["test_dataset"].unique())
    fig, ax = plt.subplots(figsize=figure_size(3.6))
    width = 0.8 / len(STYLE_GROUPS)
    hatches = ("", "//", "..")
    colours = ("#31688e", "#fde725", "#35b779")
    for offset, (group, hatch, colour) in enumerate(
        zip(STYLE_GROUPS, hatches, colours, strict=True)
    ):
        own = summary[summary["group"] == group].set_index("test_dataset").reindex(tests)
        x = np.arange(len(tests)) + (offset - 1) * width
        ax.bar(x, own["mean"], width, label=group, color=colour, hatch=hatch, edgecolor="black")
        # the interval as it is: its ends need not straddle the bar (metrics.csv's value)
        middle, half = (own["low"] + own["high"]) / 2, (own["high"] - own["low"]) / 2
        ax.errorbar(x, middle, yerr=half, fmt="none", ecolor="black", capsize=3)
        points = per_combo[per_combo["group"] == group]
        positions = [x[tests.index(t)] for t in points["test_dataset"]]
        ax.scatter(positions, points["score"], color="black", s=10, zorder=3)
    ax.set_xticks(range(len(tests)), tests)
    ax.set_xlabel("test set")
    scale = data_range([*summary["mean"], *summary["high"], *per_combo["score"]], pad=0.1)
    note = f"\n({scale.note})" if scale.note else ""
    ax.set_ylabel(f"{metric_label(metric)}, mean over lesions{note}")
    ax.set_ylim(*scale.limits)
    ax.legend(title="training data", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(
        f"Fine vs coarse annotations in training: {metric_label(metric)}\n(bars: mean over "
        "combinations, dots: combinations;\nerror bars: the mean's "
        f"{confidence_text(replicates)} bootstrap interval over test images)",
        fontsize="medium",
    )
    save_figure(fig, out)
    return summary


def report_cross_dataset(
    metrics_csv: Path | str,
    replicates_npz: Path | str,
    heatmap: Path | str,
    fine_coarse: Path | str,
    metric: str = "ap",
    method: str = SINGLE,
    coarse: Collection[str] = ("RETLES",),
) -> None:
    """The heatmaps and the fine-vs-coarse figure of ``metrics.csv``, their intervals from
    the bootstrap replicates of ``metric``, each with its table beside it (same name,
    ``.csv``): the numbers a reader quotes, and ``summary.md`` shows."""
    metrics = read_metrics(Path(metrics_csv))
    replicates = read_replicates(replicates_npz, metric)
    with replicate_errors(replicates_npz):
        tables = plot_heatmaps(metrics, replicates, Path(heatmap), metric, method)
        summary = plot_fine_coarse(metrics, coarse, replicates, Path(fine_coarse), metric, method)
    table = pd.concat(tables, names=["lesion"])  # rows: lesion x combination
    write_csv(with_metric(table.reset_index(), metric), Path(heatmap).with_suffix(".csv"))
    write_csv(with_metric(summary, metric), Path(fine_coarse).with_suffix(".csv"))
