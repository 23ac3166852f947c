"""Shared figure conventions: sizes, fonts, greyscale-safe colours, atomic saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lesionsoup.core.atomic import atomic_path  # noqa: E402

plt.rcParams.update(
    {
        "figure.dpi": 100,
        "savefig.dpi": 200,
        "font.size": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        # viridis-like cycle: distinct in colour and in grey levels
        "axes.prop_cycle": matplotlib.cycler(
            color=["#440154", "#31688e", "#35b779", "#fde725", "#21918c", "#90d743"]
        ),
    }
)


def save_figure(fig: plt.Figure, out: Path, tight: bool = True) -> None:
    """Save through a temporary name, then rename; closes the figure.

    ``tight=False`` keeps a layout the figure arranged itself (e.g. a shared colour bar).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lstrip("."))
    plt.close(fig)
