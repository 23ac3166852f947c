"""A run's logs and its trackers' files read back: log.csv and validation.csv with the csv
module, TensorBoard events with TensorBoard's EventAccumulator, W&B offline runs with
`wandb leet inspect` (W&B's reader of its ``.wandb`` files)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

#: tag -> {step: value}
Scalars = dict[str, dict[int, float]]


def logged_scalars(run: Path) -> Scalars:
    """The numbers of a run folder's ``log.csv`` (``train/``) and ``validation.csv``
    (``validation/``), per column and step."""
    scalars: Scalars = {}
    for name, prefix in (("log.csv", "train"), ("validation.csv", "validation")):
        with open(run / name, newline="") as handle:
            for row in csv.DictReader(handle):
                step = int(row.pop("step"))
                for key, value in row.items():
                    scalars.setdefault(f"{prefix}/{key}", {})[step] = float(value)
    return scalars


def tensorboard_scalars(folder: Path) -> tuple[Scalars, dict[str, list[int]]]:
    """The scalars of the event files in ``folder`` as TensorBoard shows them (events a resumed
    writer purged left out), and each tag's steps in order, repeats included."""
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    steps = {tag: [event.step for event in events.Scalars(tag)] for tag in tags}
    values = {tag: {event.step: event.value for event in events.Scalars(tag)} for tag in tags}
    return values, steps


def wandb_history(run_file: Path) -> list[tuple[int, dict[str, float]]]:
    """(step, metrics) of each history record of one offline run's ``.wandb`` file."""
    command = [Path(sys.executable).parent / "wandb", "leet", "inspect", "--json", str(run_file)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    history = []
    for line in output.splitlines():
        record = json.loads(line)
        if record.get("type") == "history":
            items = record["history"]["item"]
            step = int(record["history"]["step"]["num"])
            history.append((step, {k: v for k, v in items.items() if not k.startswith("_")}))
    return history


def wandb_runs(folder: Path) -> list[Path]:
    """The ``.wandb`` files of the offline runs under ``folder/wandb``, oldest first."""
    return sorted(folder.glob("wandb/offline-run-*/run-*.wandb"), key=lambda path: path.parent.name)


def wandb_scalars(folder: Path) -> Scalars:
    """The scalars of every offline run under ``folder/wandb``, a later run's step replacing an
    earlier's (as a resumed run continues it)."""
    scalars: Scalars = {}
    for run_file in wandb_runs(folder):
        for step, metrics in wandb_history(run_file):
            for tag, value in metrics.items():
                scalars.setdefault(tag, {})[step] = float(value)
    return scalars


def float32(scalars: Scalars) -> Scalars:
    """``scalars`` rounded to float32, as TensorBoard's events store them."""
    return {
        tag: {step: float(np.float32(v)) for step, v in values.items()}
        for tag, values in scalars.items()
    }


def same(a: Scalars, b: Scalars) -> bool:
    """Whether two sets of scalars have the same tags and steps and equal values (NaN equal to
    NaN)."""
    if a.keys() != b.keys() or any(a[tag].keys() != b[tag].keys() for tag in a):
        return False
    return all(
        (math.isnan(x) and math.isnan(y)) or x == y
        for tag in a
        for x, y in ((a[tag][step], b[tag][step]) for step in a[tag])
    )
