"""What a model cost to make, as its jobs measured it: Snakemake's benchmark records.

A model's training is the wall time of every ``train`` job that wrote a checkpoint it is made
of (a run's checkpoint: its run; a soup: its ingredients' runs; an ensemble: its candidates'),
with the runs those continued, each job counted once; its merging is the wall time of the
``merge`` and ``ensemble`` jobs that made it. A job reruns its whole record when it reruns;
a training job resumed after a preemption records only its last attempt.
"""

from __future__ import annotations

import os
from pathlib import Path

from lesionsoup.core import paths
from lesionsoup.core.benchmark_records import measured_seconds
from lesionsoup.core.checkpoint import SUFFIX, load_metadata
from lesionsoup.merging.candidates import parent_of

#: ``costs.csv``'s ``source``: training and merging from the jobs' records, or (a record
#: missing) from the times the code wrote into the models' sidecars
MEASURED, SIDECAR = "measured", "sidecar"


def _relative(model: Path) -> str:
    """The model's path as the workflow names it: relative to the working directory."""
    return os.path.normpath(os.path.relpath(model) if model.is_absolute() else model)


def _parts(model: Path) -> list[Path]:
    """What a model is made of: a soup's ingredients, an ensemble's candidates, else nothing."""
    if model.suffix == SUFFIX:
        return [Path(part) for part in load_metadata(model).get("ingredients", [])]
    from lesionsoup.inference.predictor import read_ensemble

    members, _, data = read_ensemble(model)
    return [Path(part) for part in data.get("candidates", [])] or members


def job_records(model: Path) -> tuple[set[str | None], set[str | None]]:
    """(training records, merging records) behind ``model``; None for a job without one. A
    continuation's training (an SWA or FGG run) includes the run it continued, as the
    sidecars' times do (``merging.candidates.training_seconds``)."""
    model = Path(model)
    record = paths.writer_benchmark(_relative(model))
    parts = _parts(model)
    if not parts:
        parent = parent_of(load_metadata(model)) if model.suffix == SUFFIX else None
        return {record} | (set() if parent is None else job_records(parent[0])[0]), set()
    training: set[str | None] = set()
    merging = {record}
    for part in parts:
        part_training, part_merging = job_records(part)
        training |= part_training
        merging |= part_merging
    return training, merging


def measured_cost(model: Path) -> tuple[float, float] | None:
    """Training and merging seconds of ``model`` from its jobs' benchmark records; None where
    a job behind it has no record (a model not written by the workflow, an older run)."""
    sums = []
    for records in job_records(Path(model)):
        seconds = [measured_seconds(record) for record in records]
        if None in seconds:
            return None
        sums.append(sum(seconds))  # type: ignore[arg-type]
    return sums[0], sums[1]
