"""Real Snakemake reruns after a change to a dataset's files (``data.tree``): an edited mask,
an added or a removed photograph reruns that dataset's index, cache, models and evaluations,
and the rerun's metrics and weights equal a fresh run's on the changed tree; a second run
then does nothing.

The study is ``tests/configs/rerun.yaml`` (FGADR alone, two steps a run) with five images,
so that one can be removed, run once per session up to ``metrics.csv``; each test restores
that folder to its path, changes the tree and reruns there. The fresh run starts in a clean
folder holding only the changed trees: the stamps are written when the workflow is read, so
`synth` does not regenerate them.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
from test_reruns import WEIGHTS, Study, load_config, run, same_tensors

DATASET = "FGADR"
TREE = Path("resources/synthetic") / DATASET / "Seg-set"
METRICS = "results/metrics.csv"
DOWNSTREAM = Counter(("index", "preprocess", "warmup", "train", "evaluate", "aggregate"))


def study_config() -> dict[str, Any]:
    config = load_config()
    config["synthetic"]["images"] = 5
    return config


@pytest.fixture(scope="session")
def evaluated_study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    root = tmp_path_factory.mktemp("evaluated")
    workdir, snapshot = root / "study", root / "snapshot"
    ran = run(workdir, study_config(), root / "config.yaml", (METRICS,))
    assert ran == DOWNSTREAM + Counter(("synth", "evaluated_models"))
    shutil.copytree(workdir, snapshot, symlinks=True)
    return Study(workdir, snapshot)


def _image_files(tree: Path, image_id: str) -> list[Path]:
    """The photograph and every mask of one FGADR image."""
    return sorted(tree.glob(f"*/{image_id}.png"))


def first_of(study: Path, split: str) -> str:
    """The first image of a split in the study's manifest."""
    manifest = pd.read_csv(study / "results/data" / DATASET / "manifest.csv", dtype=str)
    return manifest.loc[manifest["split"] == split, "image_id"].iloc[0]


def edit_mask(tree: Path, study: Path) -> None:
    path = tree / "HardExudate_Masks" / f"{first_of(study, 'test')}.png"
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.circle(mask, (mask.shape[1] // 2, mask.shape[0] // 2), mask.shape[0] // 5, 255, -1)
    assert cv2.imwrite(str(path), mask)


def add_photograph(tree: Path, study: Path) -> None:
    for path in _image_files(tree, first_of(study, "train")):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert cv2.imwrite(str(path.with_name("0009_1.png")), np.ascontiguousarray(image[:, ::-1]))


def remove_photograph(tree: Path, study: Path) -> None:
    for path in _image_files(tree, first_of(study, "train")):
        path.unlink()


CHANGES: dict[str, Callable[[Path, Path], None]] = {
    "edited-mask": edit_mask,
    "added-photograph": add_photograph,
    "removed-photograph": remove_photograph,
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_changed_dataset_file_reruns_its_dataset_and_equals_a_fresh_run(
    evaluated_study: Study, tmp_path: Path, change: str
) -> None:
    rerun_dir = evaluated_study.restore()
    CHANGES[change](rerun_dir / TREE, rerun_dir)
    config, configfile = study_config(), tmp_path / "config.yaml"
    reran = run(rerun_dir, config, configfile, (METRICS,))
    again = run(rerun_dir, config, configfile, (METRICS,))
    fresh = tmp_path / "fresh"
    shutil.copytree(rerun_dir / "resources" / "synthetic", fresh / "resources" / "synthetic")
    ran_fresh = run(fresh, config, configfile, (METRICS,))
    assert (reran, again) == (DOWNSTREAM, Counter())
    assert ran_fresh == DOWNSTREAM + Counter(("evaluated_models",))  # no synth: the tree is there
    old = (evaluated_study.snapshot / METRICS).read_text()
    assert (rerun_dir / METRICS).read_text() == (fresh / METRICS).read_text() != old
    assert all(same_tensors(rerun_dir / path, fresh / path) for path in WEIGHTS.values())
