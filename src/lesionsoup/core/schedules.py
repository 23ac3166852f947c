"""Learning-rate schedules as pure functions of the update index.

``lr_at(step)`` is the learning rate of update ``step`` (0-based). Being a pure
function of the step, a schedule needs no state of its own to resume exactly.

- ``cosine``: linear warm-up from 0 to ``lr`` over ``warmup_steps``, then a
  cosine decay to ``min_lr`` at the last update.
- ``constant``: warm-up, then ``lr``.
- ``swa`` (SWALR-style, Izmailov et al. 2018): continuing a trained model,
  anneal by a cosine from ``start_lr`` to ``lr`` over ``warmup_steps``; then
  either constant at ``lr`` or, with ``cyclic``, a saw-tooth falling linearly
  from ``start_lr`` to ``lr`` in each cycle. Snapshots at each cycle end.
- ``triangular`` (fast geometric generation, Garipov et al. 2018, as
  FissionFusion's ``fgg.py`` runs it): each cycle of ``cycle_steps`` falls
  linearly from ``lr`` to ``min_lr`` at its middle and rises back to ``lr``;
  the run starts a quarter cycle in, halfway down the first descent, and a
  snapshot is taken after the last update of every descent. See
  ``Schedule.lr_at`` for how this maps onto the reference's epochs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

ScheduleKind = Literal["cosine", "constant", "swa", "triangular"]
#: Schedules that fall from ``lr`` to ``min_lr``: a floor at or above the peak would make them
#: flat or rising, which no config means.
DECAYING: tuple[ScheduleKind, ...] = ("cosine", "triangular")


def rising_schedule(kind: str, lr: float, min_lr: float) -> str | None:
    """Why a schedule of ``kind`` from ``lr`` down to ``min_lr`` cannot be run; None if it can."""
    if kind in DECAYING and min_lr >= lr:
        return (
            f"min_lr {min_lr:g} >= lr {lr:g}: the {kind} schedule would stay flat or rise "
            "instead of decaying; lower min_lr or raise lr"
        )
    return None


@dataclass(frozen=True)
class Schedule:
    kind: ScheduleKind
    lr: float
    steps: int
    warmup_steps: int = 0
    min_lr: float = 0.0
    start_lr: float = 0.0
    cycle_steps: int = 0
    cyclic: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("cosine", "constant", "swa", "triangular"):
            raise ValueError(f"unknown schedule {self.kind!r}")
        if self.steps <= 0 or self.lr <= 0:
            raise ValueError("a schedule needs steps > 0 and lr > 0")
        if self.kind in ("swa", "triangular") and self.cycle_steps <= 0:
            raise ValueError(f"the {self.kind} schedule needs cycle_steps > 0")
        if problem := rising_schedule(self.kind, self.lr, self.min_lr):
            raise ValueError(problem)
        if self.kind == "triangular" and self.cycle_steps < 2:
            raise ValueError("the triangular schedule needs cycle_steps >= 2 (down, then up)")

    def _quarter_position(self, step: int) -> int:
        """Where update ``step`` falls in its triangular cycle, in quarter steps (0 to 4C-1).

        FissionFusion's ``cyclic_learning_rate`` gives iteration ``i`` of the
        ``N`` in epoch ``e`` (epochs 1 to 17, ``CYCLE`` = 4) the position
        ``t = ((e % 4) + i / N) / 4``: the cycle is 4 epochs and the run starts
        one epoch, a quarter cycle, in. With ``cycle_steps`` C = 4N, update
        ``s = (e - 1) N + i`` has ``t = ((s + C/4) mod C) / C``, exactly; any
        other C keeps the quarter-cycle phase (the reference's cycle is whole
        epochs, this one is steps). Kept in integers of quarter steps so that
        the position is exact.
        """
        return (4 * step + self.cycle_steps) % (4 * self.cycle_steps)

    def lr_at(self, step: int) -> float:
        if self.kind == "triangular":
            position = self._quarter_position(step) / (4 * self.cycle_steps)
            distance = abs(2 * position - 1)  # 1 at the cycle's ends, 0 in its middle
            return self.min_lr + (self.lr - self.min_lr) * distance
        if self.kind == "swa":
            return self._swa_lr(step)
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.lr
        decay_steps = max(1, self.steps - self.warmup_steps - 1)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    def _swa_lr(self, step: int) -> float:
        if step < self.warmup_steps:
            progress = (step + 1) / self.warmup_steps
            return self.lr + (self.start_lr - self.lr) * 0.5 * (1 + math.cos(math.pi * progress))
        if not self.cyclic:
            return self.lr
        position = ((step - self.warmup_steps) % self.cycle_steps + 1) / self.cycle_steps
        return (1 - position) * self.start_lr + position * self.lr

    def snapshot_steps(self) -> list[int]:
        """Updates after which a snapshot is saved (0-based update indices)."""
        if self.kind == "triangular":
            # the last update of each descent: the next one is at or past the cycle's middle.
            # FissionFusion saves after epochs with (epoch % 4) + 1 == 2, i.e. 1, 5, 9, 13, 17:
            # after update N - 1 + kC, whose position is just short of the minimum
            middle = 2 * self.cycle_steps
            return [
                step
                for step in range(self.steps)
                if middle - 4 <= self._quarter_position(step) < middle
            ]
        if self.kind == "swa":
            first = self.warmup_steps + self.cycle_steps - 1
            return list(range(first, self.steps, self.cycle_steps))
        return []

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
