"""Cluster limits on what a job asks for: runtime grows with the attempt, up to the partition's;
jobs that can save their state are warned before their time limit.

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


def warning_signal(config: Mapping[str, Any]) -> str:
    """A stateful rule's ``slurm_extra``: SIGTERM ``cluster.warning_seconds`` before the limit.

    Not ``B:TERM``, which reaches only the batch shell: the rule's command runs in the srun
    step the executor starts, and SLURM sends the plain form to every process of that step.
    Only for rules whose command saves its state on SIGTERM: any other would just die early.
    """
    seconds = config["cluster"]["warning_seconds"]
    maximum = config["cluster"]["max_runtime_minutes"]
    if seconds >= 60 * maximum:
        raise ValueError(
            f"cluster.warning_seconds ({seconds}) must be shorter than "
            f"cluster.max_runtime_minutes ({maximum} min)"
        )
    return f"--signal=TERM@{seconds}" if seconds else ""
