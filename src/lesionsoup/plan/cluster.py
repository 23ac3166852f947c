"""Cluster limits on what a job asks for: runtime grows with the attempt, up to the partition's.

A job that asks for more time than its partition allows is refused by SLURM, so a retry
that doubles a 24 h request on a 24 h partition would never run; capped, the retry runs
and resumes from the state the first attempt saved at its warning signal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def runtime_request(minutes: int, attempt: int, maximum: int) -> int:
    """Minutes to ask for on this attempt: ``minutes × attempt``, never above ``maximum``."""
    for name, value in (("minutes", minutes), ("attempt", attempt), ("maximum", maximum)):
        if value < 1:
            raise ValueError(f"runtime request: {name} must be at least 1, got {value}")
    return min(minutes * attempt, maximum)


def scaled_runtime(minutes: int, config: Mapping[str, Any]) -> Callable[[Any, int], int]:
    """A rule's ``runtime`` resource: ``minutes`` per attempt, capped by
    ``cluster.max_runtime_minutes`` of the (validated) config.
    """
    maximum = config["cluster"]["max_runtime_minutes"]
    runtime_request(minutes, 1, maximum)  # a bad value fails when the Snakefile is read

    def runtime(wildcards: Any, attempt: int) -> int:
        return runtime_request(minutes, attempt, maximum)

    return runtime
