"""A sixth dataset configured only in YAML (``layout: generic``) runs through the DAG to metrics.

The demo cannot synthesise a generic dataset, so the test writes its own small
tree and switches the synthetic data off.
"""

from __future__ import annotations

import csv
from pathlib import Path

import yaml
from test_datasets_generic import IDS, MASKS, write_generic_tree

from workflow import REPO, executed_rules, planned_jobs, snakemake, write_config

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
