"""The bootstrap replicates a figure draws its intervals from, checked against its metric.

A figure of one metric may only show intervals of that metric: ``read_replicates``
refuses a replicates file (``results/bootstrap.npz``) of another one, and
``replicate_errors`` names the file where a figure asks for a row it lacks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lesionsoup.evaluation.replicates import Replicates


def check_metric(replicates: Replicates, metric: str) -> Replicates:
    """The replicates, if they are of ``metric``; an error naming both metrics otherwise."""
    if replicates.metric != metric:
        raise ValueError(
            f"bootstrap replicates of {replicates.metric!r}, but the figure shows {metric!r}"
        )
    return replicates


def read_replicates(path: Path | str, metric: str) -> Replicates:
    """``Replicates.load`` of ``path``, checked to hold ``metric``."""
    replicates = Replicates.load(path)
    try:
        return check_metric(replicates, metric)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


@contextmanager
def replicate_errors(path: Path | str) -> Iterator[None]:
    """Turn a missing replicate row (``KeyError``) into an error naming ``path``."""
    try:
        yield
    except KeyError as error:
        raise ValueError(f"{path}: {error.args[0]}") from None


def confidence_text(replicates: Replicates) -> str:
    """``95%``: the replicates' confidence, for titles and labels."""
    return f"{100 * replicates.confidence:g}%"


def interval_text(low: float, high: float, digits: int = 2) -> str:
    """``[0.41, 0.63]``; empty where the interval is undefined (no finite resample)."""
    if math.isnan(low) or math.isnan(high):
        return ""
    return f"[{low:.{digits}f}, {high:.{digits}f}]"
