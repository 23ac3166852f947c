"""The linear-mode-connectivity figure: score and loss along the path between two models."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from lesionsoup.analysis.landscape import Landscape
from lesionsoup.core.figures import COLUMN_WIDTH, figure_size, save_figure
from lesionsoup.core.merge_rules import DEFAULT_PART


def plot_connectivity(
    curves: Mapping[str, pd.DataFrame],
    out: Path,
    title: str,
    sharpness: pd.DataFrame | None = None,
) -> None:
    """Validation score (top) and loss (middle) over lam, one line per curve; below, where
    given, the sharpness of A and B: loss increase over the perturbation radius."""
    rows = 3 if sharpness is not None else 2
    fig, axes = plt.subplots(rows, 1, figsize=figure_size(1.9 * rows + 0.5, COLUMN_WIDTH))
    ax_score, ax_loss = axes[0], axes[1]
    ax_loss.sharex(ax_score)
    markers = "osD^v<>"
    for index, (label, curve) in enumerate(curves.items()):
        style = {"marker": markers[index % len(markers)], "label": label, "linewidth": 1.5}
        ax_score.plot(curve["lam"], curve["score"], **style)
        ax_loss.plot(curve["lam"], curve["loss"], **style)
    ax_score.set_ylabel("validation AP\n(pooled, mean over lesions)")
    ax_loss.set_ylabel("validation loss\n(Dice + BCE, per image)")
    ax_loss.set_xlabel("λ: model (1 − λ)·A + λ·B")
    for ax in (ax_score, ax_loss):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, 1)
    ax_score.legend(frameon=False, title="BatchNorm statistics")
    if sharpness is not None:
        _plot_sharpness(axes[2], sharpness)
    fig.suptitle(title, fontsize="medium")
    save_figure(fig, out)


def _plot_sharpness(ax: plt.Axes, table: pd.DataFrame) -> None:
    """Mean loss increase (and its range over directions) at each radius, for A and B."""
    for marker, (name, own) in zip("os", table.groupby("model"), strict=False):
        stats = own.groupby("radius")["increase"].agg(["mean", "min", "max"])
        ax.errorbar(
            stats.index,
            stats["mean"],
            yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
            marker=marker,
            capsize=3,
            label=name,
        )
    ax.axhline(0, color="0.5", linewidth=0.8, linestyle="--")
    ax.set_xlabel("perturbation radius (filter-normalised, Li et al. 2018)")
    ax.set_ylabel("validation loss increase\n(mean over directions)")
    ax.legend(frameon=False, title="sharpness")
    ax.grid(alpha=0.3)


def _short(checkpoint: Path) -> str:
    """A checkpoint's name for a figure title: its path below results/, without suffix."""
    parts = checkpoint.with_suffix("").parts
    return "/".join(parts[parts.index("results") + 1 :] if "results" in parts else parts[-3:])


def plot_landscape(landscape: Landscape, out: Path) -> None:
    """The loss-landscape stage's figure (``plot_connectivity``), titled by A and B and the
    part that moves."""
    moved = "" if landscape.part == DEFAULT_PART else f" ({landscape.part} only, the rest A's)"
    a, b = _short(landscape.a), _short(landscape.b)
    title = f"Linear mode connectivity{moved}\nA = {a}\nB = {b}"
    plot_connectivity(landscape.curves, out, title, landscape.sharpness)
