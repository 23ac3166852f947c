"""The size-curve figure of one combination: score and compute against the number of members."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from lesionsoup.core.figures import save_figure
from lesionsoup.core.metrics import metric_label

MARKERS = {"uniform": "o", "greedy": "s", "ensemble": "D"}


def plot_size_curves(table: pd.DataFrame, out: Path) -> None:
    """One column per test set: the score (top) and compute (bottom, log scale) of each curve
    (``analysis.size_curves.COLUMNS``) over k."""
    if table.empty:
        raise ValueError(f"{out}: no size-curve points to plot")
    tests = sorted(table["test_dataset"].unique())
    fig, axes = plt.subplots(2, len(tests), figsize=(4.2 * len(tests), 5.6), squeeze=False)
    label = metric_label(str(table["metric"].iloc[0]))
    for column, test in enumerate(tests):
        ax_score, ax_cost = axes[0, column], axes[1, column]
        ax_cost.sharex(ax_score)
        for curve, rows in table[table["test_dataset"] == test].groupby("curve", sort=False):
            rows = rows.sort_values("k")
            style = {"marker": MARKERS.get(str(curve), "^"), "label": curve, "linewidth": 1.5}
            ax_score.plot(rows["k"], rows["value"], **style)
            ax_cost.plot(rows["k"], rows["compute_seconds"], **style)
        ax_score.set_title(f"test set {test}", fontsize="medium")
        ax_score.set_ylabel(f"test {label}\n(pooled, mean over lesions)")
        ax_cost.set_ylabel("compute seconds\n(training + inference)")
        ax_cost.set_yscale("log")
        ax_cost.set_xlabel("k: candidates, best by validation first")
        ax_cost.set_xticks(sorted(table["k"].unique()))
        for ax in (ax_score, ax_cost):
            ax.grid(alpha=0.3)
    axes[0, 0].legend(frameon=False)
    fig.suptitle(f"Size curves of {table['combo'].iloc[0]}", fontsize="medium")
    save_figure(fig, out)
