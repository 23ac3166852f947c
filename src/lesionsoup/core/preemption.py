"""Preemption: SIGTERM (SLURM preemption, scancel) becomes a save-and-exit.

No torch here, so that the command line can recognise ``Preempted`` cheaply.
"""

from __future__ import annotations

import signal
from typing import Any


class TerminationRequest:
    """Turns SIGTERM (SLURM preemption, scancel) into a save-and-exit at the next step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> TerminationRequest:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self._previous)


class Preempted(RuntimeError):
    """The run saved its state on SIGTERM and stopped; starting it again resumes."""
