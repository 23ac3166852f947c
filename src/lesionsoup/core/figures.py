"""Shared figure conventions: sizes, fonts, greyscale-safe colours, atomic saving.

Every report figure is sized for a journal page: ``PAGE_WIDTH`` (double-column text,
178 mm) or ``COLUMN_WIDTH`` (one column, 88 mm), at most ``MAX_HEIGHT`` tall, its height
over width within ``ASPECT_BOUNDS``, saved at ``DPI``: it goes into a paper at 100 %,
its fonts at their printed size. Multi-panel figures lay their panels in a grid
(``panel_grid``) and scale value axes to the data (``data_range``), saying so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lesionsoup.core.atomic import atomic_path  # noqa: E402

#: Inches: double-column text width (178 mm) and single-column width (88 mm).
PAGE_WIDTH = 7.0
COLUMN_WIDTH = 3.5
#: Inches: the tallest figure a page holds with its caption.
MAX_HEIGHT = 9.0
#: Height / width of every figure: from a one-row strip to a portrait page.
ASPECT_BOUNDS = (0.25, 1.4)
#: Dots per inch of the saved files (print resolution): a page-wide figure is 2100 px.
DPI = 300
#: Caption phrase of a value axis that does not run over the metric's whole 0-1 range.
SCALED_NOTE = "axes scaled to the data"

plt.rcParams.update(
    {
        "figure.dpi": 100,
        "savefig.dpi": DPI,
        "font.size": 8,
        "axes.titlesize": 8,
        "axes.labelsize": 8,
        "xtick.labelsize": 7,
        "ytick.labelsize": 7,
        "legend.fontsize": 7,
        "figure.titlesize": 9,
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


def figure_size(height: float, width: float = PAGE_WIDTH) -> tuple[float, float]:
    """``(width, height)`` in inches: ``height`` brought within ``ASPECT_BOUNDS`` of
    ``width`` and under ``MAX_HEIGHT``."""
    low, high = ASPECT_BOUNDS
    return width, min(max(height, low * width), high * width, MAX_HEIGHT)


def panel_grid(
    panels: int, width: float = PAGE_WIDTH, min_panel_width: float = 1.6
) -> tuple[int, int]:
    """``(rows, columns)`` for ``panels`` panels at least ``min_panel_width`` wide in
    ``width`` inches, the rows as evenly filled as the columns allow (4 in 2 columns:
    2 x 2, not 3 + 1)."""
    if panels < 1:
        raise ValueError(f"a figure needs at least one panel, not {panels}")
    columns = max(1, min(panels, math.floor(width / min_panel_width)))
    rows = math.ceil(panels / columns)
    return rows, math.ceil(panels / rows)


def panel_figure_size(
    rows: int,
    columns: int,
    width: float = PAGE_WIDTH,
    panel_aspect: float = 0.8,
    extra: float = 0.9,
) -> tuple[float, float]:
    """``figure_size`` of a ``rows x columns`` grid of panels ``panel_aspect`` as tall as
    wide, plus ``extra`` inches for titles and labels."""
    return figure_size(rows * panel_aspect * width / columns + extra, width)


@dataclass(frozen=True)
class AxisRange:
    """A value axis: its limits and, where they are not the metric's 0-1, the caption
    phrase saying so (``SCALED_NOTE``; empty otherwise)."""

    low: float
    high: float
    note: str

    @property
    def limits(self) -> tuple[float, float]:
        return self.low, self.high


def _nice(value: float, up: bool) -> float:
    """``value`` rounded away from zero (``up``: towards +inf) to half a power of ten."""
    if value == 0:
        return 0.0
    step = 10 ** math.floor(math.log10(abs(value))) / 2
    rounded = (math.ceil if up else math.floor)(value / step - 1e-9 * (1 if up else -1)) * step
    return round(rounded, 12)


def data_range(values: Iterable[float], pad: float = 0.05, unit: bool = True) -> AxisRange:
    """An axis for ``values`` (NaNs ignored): from 0 (or below the least value, if
    negative) to the greatest value plus ``pad`` of the span, rounded up to half a power
    of ten. ``unit``: the values are a 0-1 metric, drawn on 0-1 unless they stay below
    0.6 of it. The note says when the axis is scaled to the data."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return AxisRange(0.0, 1.0, "")
    least, most = min(finite), max(finite)
    if unit and least >= 0 and most > 0.6:
        return AxisRange(0.0, 1.0, "")
    span = max(most - min(least, 0.0), abs(most), 1e-12)
    high = _nice(most + pad * span, up=True) if most > 0 else 0.0
    low = 0.0 if least >= 0 else _nice(least - pad * span, up=False)
    if high <= low:
        high = low + _nice(span, up=True)
    if unit:
        high = min(high, 1.0)
    return AxisRange(low, high, SCALED_NOTE)


def wrap_label(text: str, width: int = 18, separator: str = "+") -> str:
    """``text`` broken after ``separator`` into lines of at most ``width`` characters
    where it can be (a long training combination as a row label)."""
    parts = text.split(separator)
    lines, line = [], ""
    for index, part in enumerate(parts):
        piece = part + (separator if index < len(parts) - 1 else "")
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = piece
        else:
            line += piece
    lines.append(line)
    return "\n".join(lines)
