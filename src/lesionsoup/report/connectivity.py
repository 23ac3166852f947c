"""The linear-mode-connectivity figure: score and loss along the path between two models."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from lesionsoup.core.figures import save_figure


def plot_connectivity(curves: Mapping[str, pd.DataFrame], out: Path, title: str) -> None:
    """Validation score (top) and loss (bottom) over lam, one line per curve."""
    fig, (ax_score, ax_loss) = plt.subplots(2, 1, figsize=(5.5, 5.5), sharex=True)
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
    fig.suptitle(title, fontsize="medium")
    save_figure(fig, out)
