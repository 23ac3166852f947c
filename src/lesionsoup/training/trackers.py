"""Live tracking of a run in TensorBoard or Weights & Biases (``training.trackers``).

The trackers get exactly what the run's logs get, when they get it: the
rows of ``log.csv`` (loss, learning rate, patches/s) as the loop reads them
back, and each row of ``validation.csv``, as the numbers those files hold
(the CSV's text read back), so a tracker's scalars equal the logs'.
Their files are side files in the run's folder (``tensorboard/``,
``wandb/``); nothing else reads them, so they change no result, and
neither are they part of a run's fingerprint.

Only the writing rank tracks. A run that starts at step 0 (a fresh run, a
discarded state) deletes the trackers' folders of an earlier attempt; one
that resumes at step ``s`` continues them: TensorBoard purges its events
past ``s`` (``purge_step``), and W&B opens a new offline run of the same id
(kept in ``wandb/run-id``), so that ``wandb sync`` adds it to the same run.
After SIGTERM nothing was tracked past the saved state; after a crash between
states, the first attempt's rows past it stay in its offline run, and how W&B
merges the resumed attempt's repeats of those steps on ``wandb sync`` is W&B's
(not tested here: it needs a server).
W&B runs offline unless ``WANDB_MODE`` says otherwise; its project is
``WANDB_PROJECT`` or ``lesionsoup``. The packages are optional extras,
imported only when a tracker is asked for.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lesionsoup.training.progress import StepRow

#: Each tracker's name (as ``training.trackers`` lists it) and the module it needs;
#: the extra to install has the tracker's name.
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb"}
#: The file that keeps a run's W&B id, so that a resumed run continues it.
WANDB_ID = "run-id"


class Tracker(Protocol):
    """Where scalars of a step go."""

    def log(self, scalars: Mapping[str, float], step: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


def check_trackers(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` if each is a tracker whose package is installed; else a ValueError naming
    the extra to install."""
    names = tuple(names)
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"unknown tracker {name!r}; trackers are {', '.join(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ValueError(
                f"tracker {name!r} needs the {TRACKERS[name]} package, which is not installed: "
                f"pip install 'lesionsoup[{name}]'"
            )
    return names


def step_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """A log row's numbers, as its CSV holds them, without its step."""
    return {key: float(value) for key, value in row.items() if key != "step"}


class TensorBoardTracker:
    """Scalars as TensorBoard events in ``folder``; a resumed run purges the events past it."""

    def __init__(self, folder: Path, resume_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(
            str(folder), purge_step=resume_step + 1 if resume_step else None
        )

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A W&B run (offline unless ``WANDB_MODE`` says otherwise) under ``folder/wandb``."""

    def __init__(
        self, folder: Path, name: str, config: Mapping[str, Any], resume_step: int
    ) -> None:
        import wandb

        id_file = folder / "wandb" / WANDB_ID
        run_id = id_file.read_text().strip() if resume_step and id_file.exists() else ""
        self.run = wandb.init(
            dir=str(folder.resolve()),  # a W&B service shared with another process has its own cwd
            project=os.environ.get("WANDB_PROJECT", "lesionsoup"),
            name=name,
            id=run_id or None,  # none: W&B draws one
            resume="allow",
            mode=os.environ.get("WANDB_MODE", "offline"),  # type: ignore[arg-type]
            config=dict(config),
            settings=wandb.Settings(console="off"),
        )
        id_file.write_text(self.run.id + "\n")

    def log(self, scalars: Mapping[str, float], step: int) -> None:
        self.run.log(dict(scalars), step=step)

    def flush(self) -> None:
        """Nothing: the W&B process writes each record as it gets it."""

    def close(self) -> None:
        self.run.finish()


@dataclass
class Trackers:
    """The trackers of a run (none by default): what the loop calls."""

    members: Sequence[Tracker] = ()

    def log_steps(self, rows: Iterable[StepRow]) -> None:
        """Rows of ``log.csv``, under ``train/``."""
        for row in rows:
            scalars = step_scalars(row.as_csv())
            self._log({f"train/{key}": value for key, value in scalars.items()}, row.step)

    def log_validation(self, row: Mapping[str, Any]) -> None:
        """A row of ``validation.csv``, under ``validation/``, with the text its CSV holds."""
        scalars = step_scalars({key: str(value) for key, value in row.items()})
        self._log({f"validation/{key}": value for key, value in scalars.items()}, row["step"])

    def _log(self, scalars: Mapping[str, float], step: int) -> None:
        for member in self.members:
            member.log(scalars, step)

    def flush(self) -> None:
        for member in self.members:
            member.flush()

    def close(self) -> None:
        for member in self.members:
            member.close()


def open_trackers(
    names: Sequence[str], folder: Path, resume_step: int, config: Mapping[str, Any]
) -> Trackers:
    """The trackers ``names`` of the run tracked in ``folder``, which resumes at ``resume_step``
    (0: a fresh start, which deletes an earlier attempt's trackers' folders)."""
    check_trackers(names)
    if not names:
        return Trackers()
    folder.mkdir(parents=True, exist_ok=True)
    if resume_step == 0:
        for name in TRACKERS:
            shutil.rmtree(folder / name, ignore_errors=True)
    members: list[Tracker] = []
    if "tensorboard" in names:
        members.append(TensorBoardTracker(folder / "tensorboard", resume_step))
    if "wandb" in names:
        name = "/".join(folder.parts[-3:])
        members.append(WandbTracker(folder, name, config, resume_step))
    return Trackers(members)
