"""The page layout every figure keeps (tests/report/test_figure_layout.py), shared with the
averaging analysis tests."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from lesionsoup.core.figures import ASPECT_BOUNDS, COLUMN_WIDTH, DPI, MAX_HEIGHT, PAGE_WIDTH


def _finite(values: object) -> bool:
    array = np.asarray(values, dtype=float)
    return array.size > 0 and bool(np.isfinite(array).any())


def has_data(ax: plt.Axes) -> bool:
    """Whether a panel draws something: an image, a line, a bar or a collection with
    finite data (an axis with only NaN bars, or nothing, is an empty panel)."""
    if ax.images:
        return True
    if any(_finite(line.get_xydata()) for line in ax.lines):
        return True
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    if any(np.isfinite(p.get_height()) and p.get_height() != 0 for p in bars):
        return True
    if any(not isinstance(p, Rectangle) for p in ax.patches):
        return True
    for collection in ax.collections:
        paths = collection.get_paths()
        if any(_finite(path.vertices) for path in paths) or _finite(collection.get_offsets()):
            return True
    return False


def check_layout(fig: plt.Figure) -> None:
    """Page or column wide, within the aspect bounds and the page height; no empty panel."""
    width, height = fig.get_size_inches()
    assert width in (pytest.approx(PAGE_WIDTH), pytest.approx(COLUMN_WIDTH)), width
    low, high = ASPECT_BOUNDS
    assert low <= height / width <= high, (width, height)
    assert height <= MAX_HEIGHT + 1e-9
    assert width * DPI <= PAGE_WIDTH * DPI + 0.5  # no 5000 px strips
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert visible
    empty = [ax.get_title() or ax.get_label() for ax in visible if not has_data(ax)]
    assert not empty, f"empty panels: {empty}"
