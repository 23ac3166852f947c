"""The size-curve figure of one combination: score and compute against the number of members."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from lesionsoup.core.figures import panel_figure_size, save_figure
from lesionsoup.core.metrics import metric_label

MARKERS = {"uniform": "o", "greedy": "s", "ensemble": "D"}
#: How far apart on k the curves' scores are drawn, so that their interval bars do not overlap.
DODGE = 0.08


def _confidence(table: pd.DataFrame) -> str:
    """``95%``: the one confidence of the table's intervals."""
    levels = table["confidence"].unique()
    if len(levels) != 1:
        raise ValueError(f"size-curve intervals of several confidences: {sorted(levels)}")
    return f"{100 * float(levels[0]):g}%"


def plot_size_curves(table: pd.DataFrame, out: Path) -> None:
    """One column per test set: the score with its bootstrap interval (top) and compute
    (bottom, log scale) of each curve (``analysis.size_curves.COLUMNS``) over k."""
    if table.empty:
        raise ValueError(f"{out}: no size-curve points to plot")
    tests = sorted(table["test_dataset"].unique())
    fig, axes = plt.subplots(
        2, len(tests), figsize=panel_figure_size(2, len(tests), panel_aspect=0.9), squeeze=False
    )
    label, confidence = metric_label(str(table["metric"].iloc[0])), _confidence(table)
    curves = list(dict.fromkeys(table["curve"]))
    for column, test in enumerate(tests):
        ax_score, ax_cost = axes[0, column], axes[1, column]
        ax_cost.sharex(ax_score)
        for curve, rows in table[table["test_dataset"] == test].groupby("curve", sort=False):
            rows = rows.sort_values("k")
            style = {"marker": MARKERS.get(str(curve), "^"), "label": curve, "linewidth": 1.5}
            k = rows["k"] + DODGE * (curves.index(curve) - (len(curves) - 1) / 2)
            (line,) = ax_score.plot(k, rows["value"], **style)
            ax_score.vlines(k, rows["low"], rows["high"], color=line.get_color(), linewidth=1.2)
            ax_cost.plot(rows["k"], rows["compute_seconds"], **style)
        ax_score.set_title(f"test set {test}", fontsize="medium")
        ax_score.set_ylabel(f"test {label}\n(pooled, mean over lesions)")
        ax_cost.set_ylabel("compute seconds\n(training + inference)")
        ax_cost.set_yscale("log")
        ax_cost.set_xlabel("k: candidates, best by validation first")
        ax_cost.set_xticks(sorted(table["k"].unique()))
        for ax in (ax_score, ax_cost):
            ax.grid(alpha=0.3)
    axes[1, 0].legend(frameon=False, loc="upper left")  # compute grows to the right
    fig.suptitle(
        f"Size curves of {table['combo'].iloc[0]}\n"
        f"(bars: {confidence} bootstrap interval over test images)",
        fontsize="medium",
    )
    save_figure(fig, out)
