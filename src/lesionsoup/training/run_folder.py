"""A run's folder: where its files are, and publishing them when the run is complete.

While a run trains, everything it needs to resume is kept in ``<run>/.work``
(state, best checkpoint so far, snapshots, step log); the declared outputs
(``last``, ``best``, ``snapshots/``, ``log.csv``, ``validation.csv``,
``curves.png``) are published only when the run is complete, so a workflow
engine that deletes the outputs of a killed job never deletes what the next
attempt resumes from. Only ``log.csv``, ``validation.csv`` and ``curves.png``
are redrawn before that, at every validation (``write_progress``), to watch a
run. Once the outputs are published, ``.work`` is deleted: ``results/`` holds
each checkpoint once. A run asked to keep its optimiser state also publishes,
in ``optimizer/``, the AdamW state saved with its ``best`` checkpoint (the base
of an FGG continuation) or its ``last`` (the base of an SWA continuation).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from lesionsoup.core.atomic import atomic_copy
from lesionsoup.core.checkpoint import (
    SHARED_INITIALISATION,
    copy_checkpoint,
    load_checkpoint,
    save_checkpoint,
    state_digest,
)
from lesionsoup.core.paths import OPTIMIZER_FOLDER, optimizer_file


@dataclass
class RunPaths:
    """Where a run's files are: its folder, its work folder and its published checkpoints."""

    root: Path
    work: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.work = self.root / ".work"

    @property
    def last(self) -> Path:
        return self.root / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.root / "best.safetensors"

    def optimizer(self, checkpoint: str) -> Path:
        """The published optimiser state of ``checkpoint`` (only runs asked to keep it)."""
        return self.root / OPTIMIZER_FOLDER / optimizer_file(checkpoint)

    def work_optimizer(self, checkpoint: str) -> Path:
        """The optimiser state saved with ``checkpoint`` (best so far, last) in ``.work``."""
        return self.work / f"{checkpoint}.optimizer.safetensors"


def write_progress(paths: RunPaths, status: str = "") -> None:
    """``validation.csv``, ``log.csv`` and ``curves.png`` in the run folder, copied and drawn
    from the work folder's logs: refreshed at every validation while the run goes (``status``
    says how far it got), final when it is published."""
    from lesionsoup.training.curves import plot_training_curves

    for name in ("log.csv", "validation.csv"):
        atomic_copy(paths.work / name, paths.root / name)
    plot_training_curves(
        paths.root / "log.csv",
        paths.root / "validation.csv",
        paths.root / "curves.png",
        status=status,
    )


def publish(paths: RunPaths, keep_optimizer: tuple[str, ...]) -> None:
    """Copy the finished run's outputs from the work folder to their declared places."""
    snapshots = paths.root / "snapshots"
    shutil.rmtree(snapshots, ignore_errors=True)  # a stale run's may have other steps
    snapshots.mkdir()
    for source in sorted((paths.work / "snapshots").glob("*.safetensors")):
        copy_checkpoint(source, snapshots / source.name)
    folder = paths.root / OPTIMIZER_FOLDER
    shutil.rmtree(folder, ignore_errors=True)  # an empty folder unless kept
    folder.mkdir()
    for checkpoint in keep_optimizer:
        atomic_copy(paths.work_optimizer(checkpoint), paths.optimizer(checkpoint))
    write_progress(paths)
    best = paths.work / "best.safetensors"
    copy_checkpoint(best if best.exists() else paths.work / "last.safetensors", paths.best)
    copy_checkpoint(paths.work / "last.safetensors", paths.last)  # last: the run is complete
    shutil.rmtree(paths.work)


def publish_init(run_dir: Path, init_path: Path) -> None:
    """Turn a finished warm-up run into the combination's shared initialisation.

    The warm-up run folder is deleted afterwards: the initialisation is its only product.
    """
    state, meta = load_checkpoint(RunPaths(run_dir).last)
    meta = {**meta, "init_id": state_digest(state), "role": SHARED_INITIALISATION}
    meta.pop("parent", None)
    meta.pop("start", None)  # the warm-up started independently; its product is the shared start
    save_checkpoint(init_path, state, meta)
    shutil.rmtree(run_dir)
