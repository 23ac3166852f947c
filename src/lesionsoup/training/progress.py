"""What a training run shows while it goes: losses read back in bulk, and a progress line.

A GPU runs ahead of the Python loop until something reads a value back to
the host; reading the loss every step (to log it, or to check that it is
finite) stalls the pipeline once per step. ``PendingSteps`` keeps each
step's loss on the device and reads the losses of many steps back at once,
one host sync, when the loop asks (every ``log_every`` steps, and before
every validation and saved state); a non-finite loss raises then, naming
its step, before any state that includes it can be saved.

``ProgressLine`` turns the rows read back into one readable log line every
N steps (step, mean loss, learning rate, patches/s, ETA) for job logs,
where a progress bar would write thousands of carriage-return frames.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Steps between read-backs of the loss (and progress lines) unless told otherwise.
LOG_EVERY = 50


@dataclass(frozen=True)
class Step:
    """One optimiser step as the after-step hooks see it; its loss is still on the device."""

    number: int  # steps completed, this one included
    loss: torch.Tensor  # 0-dimensional, detached
    lr: float
    patches: int
    seconds: float  # host time, including the wait for its batch


@dataclass(frozen=True)
class StepRow:
    """A step read back to the host: a row of ``log.csv``.

    ``patches_per_s`` is the rate over the steps read back together, the wait
    for the device included (between read-backs the host only queues work).
    """

    step: int
    loss: float
    lr: float
    patches_per_s: float

    def as_csv(self) -> dict[str, str | int]:
        return {
            "step": self.step,
            "loss": f"{self.loss:.6f}",
            "lr": f"{self.lr:.6e}",
            "patches_per_s": f"{self.patches_per_s:.2f}",
        }


@dataclass
class PendingSteps:
    """Steps whose losses have not been read back to the host yet."""

    steps: list[Step] = field(default_factory=list)

    def add(self, step: Step) -> None:
        self.steps.append(step)

    def read_back(self, run: Path) -> list[StepRow]:
        """The pending steps as rows, after one host sync; raises on a non-finite loss."""
        import torch  # here: the command line reads LOG_EVERY without loading torch

        if not self.steps:
            return []
        started = time.perf_counter()
        losses = torch.stack([step.loss.float() for step in self.steps]).tolist()
        seconds = sum(step.seconds for step in self.steps) + time.perf_counter() - started
        steps, self.steps = self.steps, []
        for step, loss in zip(steps, losses, strict=True):
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"{run}: loss is {loss} at step {step.number}; lower the learning rate"
                )
        rate = sum(step.patches for step in steps) / max(seconds, 1e-9)
        return [StepRow(s.number, loss, s.lr, rate) for s, loss in zip(steps, losses, strict=True)]


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` (days spelled out past 24 h), or ``?`` before any estimate."""
    if not math.isfinite(seconds):
        return "?"
    return str(timedelta(seconds=round(max(seconds, 0.0))))


@dataclass
class ProgressLine:
    """One log line every ``every`` steps, and after the last, from the rows read back.

    The loss is the mean over the steps since the previous line, patches/s
    their training rate, and the ETA extrapolates this session's pace,
    validation and saving included.
    """

    name: str
    total: int
    every: int
    first_step: int
    started: float = field(default_factory=time.perf_counter)
    rows: list[StepRow] = field(default_factory=list)

    def show(self, rows: list[StepRow]) -> None:
        self.rows.extend(rows)
        if self.rows and (self.rows[-1].step % self.every == 0 or self.rows[-1].step >= self.total):
            log.info("%s", self.line(time.perf_counter()))
            self.rows = []

    def line(self, now: float) -> str:
        """The line of the rows gathered so far (at least one)."""
        last = self.rows[-1]
        loss = sum(row.loss for row in self.rows) / len(self.rows)
        rate = len(self.rows) / sum(1 / row.patches_per_s for row in self.rows)
        done = last.step - self.first_step
        eta = (now - self.started) / done * (self.total - last.step) if done > 0 else math.nan
        return (
            f"{self.name}: step {last.step}/{self.total} ({100 * last.step / self.total:.0f}%)"
            f" | loss {loss:.4f} | lr {last.lr:.2e} | {rate:.1f} patches/s"
            f" | ETA {format_eta(eta)}"
        )
