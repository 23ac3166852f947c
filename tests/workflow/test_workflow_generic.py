"""A sixth dataset configured only in YAML (``layout: generic``) runs through the DAG to metrics.

The demo cannot synthesise a generic dataset, so the test writes its own small
tree and switches the synthetic data off.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import yaml
from support.generic_tree import IDS, MASKS, write_generic_tree
from support.native_trees import write_image
from support.workflow import REPO, executed_rules, planned_jobs, snakemake, write_config

from lesionsoup.core.lesions import IGNORE_BIT, Lesion
from lesionsoup.data.cache import Cache

NAME = "EOPHTHA"
SPLITS = {"p1_L": "train", "p1_R": "train", "p2_L": "train", "p2_R": "valid", "p3_L": "test"}


def _config(root: Path) -> dict:
    """The rerun tests' study (one dataset, two steps a run) on the generic dataset alone."""
    config = yaml.safe_load((REPO / "tests" / "configs" / "rerun.yaml").read_text())
    config["synthetic"]["enabled"] = False
    config["datasets"] = {
        NAME: {
            "layout": "generic",
            "root": str(root),
            "images": "images/*.jpg",
            "masks": MASKS,
            "split_file": "splits.csv",
        }
    }
    config["training"]["combinations"] = [NAME]
    config["evaluation"]["test_datasets"] = "all"
    return config


def _write_splits(root: Path, splits: dict[str, str]) -> None:
    rows = "".join(f"{image_id},{split}\n" for image_id, split in splits.items())
    (root / "splits.csv").write_text("image_id,split\n" + rows)


def test_a_generic_dataset_runs_to_metrics_and_its_split_file_is_an_input(
    tmp_path: Path,
) -> None:
    root = write_generic_tree(tmp_path / "eophtha", IDS[:5], width=96, height=64)
    _write_splits(root, SPLITS)
    configfile = write_config(tmp_path / "config.yaml", _config(root))
    result = snakemake(tmp_path, configfile, "--cores", "2", "results/metrics.csv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert executed_rules(result)["synth"] == 0 and executed_rules(result)["index"] == 1
    with (tmp_path / "results" / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert {(row["train_combo"], row["test_dataset"]) for row in rows} == {(NAME, NAME)}
    assert {row["lesion"] for row in rows if row["metric"] == "ap"} >= {"EX", "HE"}
    _write_splits(root, {**SPLITS, "p2_L": "test"})
    assert ("index", f"dataset={NAME}") in planned_jobs(tmp_path, configfile)


def _write_label_map_tree(root: Path) -> Path:
    """Photographs whose one mask file per image is a label map: a square of value 1
    (exudate), one of 2 (haemorrhage) and one of 127 (excluded by the graders)."""
    for image_id in SPLITS:
        write_image(root / "images" / f"{image_id}.jpg", 96, 64)
        labels = np.zeros((64, 96), np.uint8)
        labels[20:30, 20:30], labels[20:30, 50:60], labels[40:50, 35:45] = 1, 2, 127
        (root / "labels").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "labels" / f"{image_id}.png"), labels)
    _write_splits(root, SPLITS)
    return root


def test_per_lesion_value_rules_and_the_excluded_value_reach_the_cache(tmp_path: Path) -> None:
    config = _config(_write_label_map_tree(tmp_path / "labelmaps"))
    config["datasets"][NAME]["masks"] = {
        "EX": {"pattern": "labels/{stem}.png", "values": [1]},
        "HE": {"pattern": "labels/{stem}.png", "values": [2]},
    }
    config["datasets"][NAME]["uncertain"] = {"value": 127}
    configfile = write_config(tmp_path / "config.yaml", config)
    result = snakemake(tmp_path, configfile, "--cores", "1", f"results/cache/{NAME}")
    assert result.returncode == 0, result.stdout + result.stderr
    cache = Cache(tmp_path / "results" / "cache" / NAME)
    labels = cache.labels("p1_L")
    exudate, haemorrhage = (labels & Lesion.EX.bit) > 0, (labels & Lesion.HE.bit) > 0
    ignored = (labels & IGNORE_BIT) > 0
    # The mask threshold (128) alone would find no lesion; a threshold of 1 would find
    # every square in both classes. Each class gets its own square only.
    assert exudate.any() and haemorrhage.any() and ignored.any()
    assert not (exudate & haemorrhage).any() and not (ignored & (exudate | haemorrhage)).any()
    columns = [np.flatnonzero(plane.any(axis=0)) for plane in (exudate, haemorrhage)]
    assert columns[0].max() < columns[1].min()  # the exudate square lies left of the other
