"""The training-curve figure of one run: loss, validation scores, learning rate.

The trainer redraws it at every validation while the run goes, and once more when it ends.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lesionsoup.core.figures import figure_size, save_figure  # noqa: E402


def plot_training_curves(step_log: Path, validation_csv: Path, out: Path, status: str = "") -> None:
    """The figure of a run's ``log.csv`` and ``validation.csv``; ``status`` (e.g. how far a
    running job got) is added to the title."""
    steps = pd.read_csv(step_log)
    validation = pd.read_csv(validation_csv)
    fig, (ax_loss, ax_val, ax_lr) = plt.subplots(
        3, 1, figsize=figure_size(6.5), sharex=True, height_ratios=(3, 3, 1.5)
    )
    window = max(1, len(steps) // 50)
    ax_loss.plot(steps["step"], steps["loss"], color="0.75", linewidth=0.8, label="per step")
    ax_loss.plot(
        steps["step"],
        steps["loss"].rolling(window, min_periods=1).mean(),
        color="black",
        linewidth=1.5,
        label=f"moving mean ({window} steps)",
    )
    ax_loss.set_ylabel("training loss\n(Dice + BCE)")
    ax_loss.legend(frameon=False)
    lesion_columns = [c for c in validation.columns if c not in ("step", "score")]
    markers = "osD^v<>"
    for marker, column in zip(markers, lesion_columns, strict=False):
        ax_val.plot(
            validation["step"], validation[column], marker=marker, linewidth=1, label=column
        )
    if len(validation):
        ax_val.plot(
            validation["step"], validation["score"], color="black", linewidth=2.5, label="mean"
        )
    ax_val.set_ylabel("validation AP\n(pooled pixels)")
    ax_val.set_ylim(0, 1)
    ax_val.legend(frameon=False, ncol=3, fontsize="small")
    ax_lr.plot(steps["step"], steps["lr"], color="black")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("optimiser step")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    for ax in (ax_loss, ax_val, ax_lr):
        ax.grid(alpha=0.3)
    title = f"Training of {' / '.join(step_log.parent.parts[-3:])}"
    fig.suptitle(f"{title} ({status})" if status else title)
    save_figure(fig, out)
