"""Training-set fractions (``split.train_fraction``) and subset datasets (``of``).

The subsets are nested and patient-aware, leave test and valid alone, live in
the manifest (``unused`` rows) and never in a cache; a subset dataset's manifest
is its source's with its name and some train rows ``unused``; the workflow
indexes and caches it, and a changed fraction re-indexes that dataset alone, its
manifest byte-identical to a fresh run's (but for the study folder in its paths).
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest
import yaml
from support.native_trees import fgadr_tree, idrid_tree
from support.workflow import REPO, executed_rules, load_tiny_config, snakemake, write_config

from lesionsoup.core.combos import expand_combinations
from lesionsoup.data.datasets.index import index_dataset
from lesionsoup.data.splits import (
    SPLITS,
    TRAIN,
    UNUSED,
    SplitOptions,
    apply_train_fraction,
    assign_splits,
)
from lesionsoup.plan import study
from lesionsoup.plan.datasets import resolve_subsets
from lesionsoup.plan.validation import ConfigError

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
FRACTIONS = (0.25, 0.5, 1.0)


def _patients(count: int) -> list[str]:
    """Two images (eyes) of each of ``count`` patients."""
    return [f"P{number:04d}" for number in range(count) for _ in range(2)]


def _splits(patients: list[str], fraction: float, official=None) -> list[str]:
    official = official or [None] * len(patients)
    options = SplitOptions(seed=3, train_fraction=fraction)
    return assign_splits(official, patients, "FGADR", options)


def _training(patients: list[str], splits: list[str]) -> set[str]:
    return {patient for patient, split in zip(patients, splits, strict=True) if split == TRAIN}


# ---------------------------------------------------------------- the draw


def test_subsets_are_nested_patient_aware_and_leave_test_and_valid_alone() -> None:
    patients = _patients(1000)
    by_fraction = {fraction: _splits(patients, fraction) for fraction in FRACTIONS}
    full = by_fraction[1.0]
    assert UNUSED not in full
    for splits in by_fraction.values():
        for patient, split, whole in zip(patients, splits, full, strict=True):
            assert (split == whole) or (whole == TRAIN and split == UNUSED), patient
        assert (pd.DataFrame({"p": patients, "s": splits}).groupby("p")["s"].nunique() == 1).all()
    quarter, half = (_training(patients, by_fraction[f]) for f in (0.25, 0.5))
    assert quarter < half < _training(patients, full)


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_the_realised_fraction_is_the_requested_one(fraction: float) -> None:
    patients = _patients(1000)
    trained = len(_training(patients, _splits(patients, fraction)))
    pool = len(_training(patients, _splits(patients, 1.0)))
    spread = math.sqrt(fraction * (1 - fraction) / pool)
    assert abs(trained / pool - fraction) < 4 * spread, (trained, pool)


def test_an_official_split_keeps_its_test_part_and_its_carved_valid_part() -> None:
    patients = [f"I{n:03d}" for n in range(60)]
    official = ["train"] * 40 + ["test"] * 20
    full, half = (_splits(patients, fraction, official) for fraction in (1.0, 0.5))
    assert half[40:] == full[40:] == ["test"] * 20
    assert [s for s in half if s == "valid"] == [s for s in full if s == "valid"]
    assert {UNUSED, TRAIN} <= set(half)


def test_the_draw_is_independent_of_the_part_draw() -> None:
    """The salt: the kept patients are no interval of the part draw's order."""
    patients = _patients(400)
    full, quarter = _splits(patients, 1.0), _splits(patients, 0.25)
    kept = [split == TRAIN for split, whole in zip(quarter, full, strict=True) if whole == TRAIN]
    switches = sum(a != b for a, b in zip(kept, kept[1:], strict=False))
    assert switches > 50  # a fraction of the part draw's interval would switch once


def test_a_tiny_training_part_keeps_one_patient_and_stays_nested() -> None:
    patients, splits = ["a", "b", "c"], [TRAIN, TRAIN, "test"]
    tiny = apply_train_fraction(splits, patients, "X", 0, 1e-9)
    assert tiny.count(TRAIN) == 1 and tiny[2] == "test"
    for fraction in (0.1, 0.5, 0.9):
        larger = apply_train_fraction(splits, patients, "X", 0, fraction)
        assert _training(patients, tiny) <= _training(patients, larger)
    assert apply_train_fraction(["test"], ["a"], "X", 0, 0.5) == ["test"]


@pytest.mark.parametrize("fraction", [0, -0.5, 1.5, True, "half"])
def test_a_bad_fraction_is_refused(fraction: Any) -> None:
    with pytest.raises(ValueError, match="train_fraction"):
        SplitOptions(train_fraction=fraction)


def test_unused_is_one_of_the_manifest_splits() -> None:
    assert SPLITS[-1] == UNUSED


# ---------------------------------------------------------------- index


def test_a_subset_manifest_is_its_sources_with_train_rows_unused(tmp_path: Path) -> None:
    root = fgadr_tree(tmp_path / "fgadr", {f"{n:04d}_1": ["EX"] for n in range(40)})
    source = index_dataset("FGADR", root, {"split": {"seed": 1}})
    subset = index_dataset(
        "FGADR50", root, {"of": "FGADR", "split": {"seed": 1, "train_fraction": 0.5}}
    )
    assert set(subset["dataset"]) == {"FGADR50"}
    merged = source.merge(subset, on="image_id", suffixes=("", "_subset"))
    assert len(merged) == len(source) == len(subset)
    moved = merged["split"] != merged["split_subset"]
    assert moved.any() and (merged.loc[moved, "split"] == TRAIN).all()
    assert (merged.loc[moved, "split_subset"] == UNUSED).all()
    assert (subset["split"] == TRAIN).any()
    assert subset.drop(columns="dataset").equals(
        subset.drop(columns="dataset").sort_values(["split", "image_id"], key=_split_order)
    )  # rows sorted by split, unused last
    assert list(source["image_id"][~source["split"].eq(TRAIN)]) == list(
        subset["image_id"][subset["split"].isin(["valid", "test"])]
    )


def _split_order(column: pd.Series) -> pd.Series:
    return column.map(SPLITS.index) if column.name == "split" else column


def test_a_subset_of_an_official_split_keeps_the_test_part(tmp_path: Path) -> None:
    plan = {
        "train": {f"IDRiD_{n:02d}": ["EX"] for n in range(1, 21)},
        "test": {f"IDRiD_{n:02d}": ["EX"] for n in range(21, 31)},
    }
    root = idrid_tree(tmp_path / "idrid", plan)
    source = index_dataset("IDRID", root, {})
    subset = index_dataset("IDRID25", root, {"of": "IDRID", "split": {"train_fraction": 0.25}})
    for part in ("test", "valid"):
        assert list(source.loc[source["split"] == part, "image_id"]) == list(
            subset.loc[subset["split"] == part, "image_id"]
        )
    assert 1 <= (subset["split"] == TRAIN).sum() < (source["split"] == TRAIN).sum()


def test_index_refuses_a_bad_subset_name(tmp_path: Path) -> None:
    root = fgadr_tree(tmp_path / "fgadr", {"0001_1": ["EX"]})
    with pytest.raises(ValueError, match="must match"):
        index_dataset("fgadr-50", root, {"of": "FGADR"})


# ---------------------------------------------------------------- the plan


def _config(datasets: dict[str, Any], **evaluation: Any) -> dict[str, Any]:
    return {"datasets": datasets, "evaluation": {"test_datasets": "all", **evaluation}}


def test_a_subset_entry_takes_its_sources_entry_with_split_merged_key_by_key() -> None:
    config = _config(
        {
            "IDRID": {"root": "i", "split": {"seed": 4, "valid": 0.2}},
            "IDRID25": {"of": "IDRID", "split": {"train_fraction": 0.25}},
            "EOPHTHA": {
                "layout": "generic",
                "root": "e",
                "images": "*.jpg",
                "masks": {"EX": "{stem}.png"},
            },
            "EOPHTHA50": {"of": "EOPHTHA", "split": {"train_fraction": 0.5}, "root": "e2"},
        }
    )
    resolve_subsets(config, SCHEMA)
    datasets = config["datasets"]
    assert datasets["IDRID25"] == {
        "root": "i",
        "split": {"seed": 4, "valid": 0.2, "train_fraction": 0.25},
        "of": "IDRID",
    }
    assert datasets["EOPHTHA50"]["root"] == "e2" and datasets["EOPHTHA50"]["layout"] == "generic"
    before = yaml.safe_dump(config)
    resolve_subsets(config, SCHEMA)
    assert yaml.safe_dump(config) == before
    assert study.test_datasets(config) == ["EOPHTHA", "IDRID"]  # all: no subsets
    assert study.test_datasets(_config(datasets, test_datasets=["IDRID25"])) == ["IDRID25"]


@pytest.mark.parametrize(
    ("datasets", "message"),
    [
        ({"IDRID50": {"of": "IDRX"}}, "datasets.IDRID50.of: dataset 'IDRX' is not configured"),
        ({"A": {"of": "IDRID"}, "B": {"of": "A"}}, "datasets.B.of: A is itself a subset"),
        ({"A": {"of": "IDRID", "split": {"train_fraction": 0}}}, "datasets.A.split.train_fraction"),
        ({"A": {"of": "IDRID", "split": {"train_fraction": 2}}}, "datasets.A.split.train_fraction"),
        ({"A": {"of": "IDRID", "split": {"test": 0.2}}}, "datasets.A.split.test"),
        ({"A": {"of": "IDRID", "hemorrhage": "union"}}, "datasets.A.hemorrhage"),
    ],
)
def test_a_bad_subset_entry_is_a_plan_error_naming_its_key(
    datasets: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        resolve_subsets(_config({"IDRID": {"root": "i"}, **datasets}), SCHEMA)


@pytest.mark.parametrize("fraction", [0, 1.5])
def test_the_schema_refuses_a_bad_fraction_of_any_dataset(fraction: float) -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    datasets = {"$defs": schema["$defs"], **schema["properties"]["datasets"]}
    validator = jsonschema.Draft202012Validator(datasets)
    for name in ("IDRID", "DDR", "FGADR"):
        validator.validate({name: {"root": "r", "split": {"train_fraction": 0.5}}})
        errors = list(
            validator.iter_errors({name: {"root": "r", "split": {"train_fraction": fraction}}})
        )
        assert errors, name


def test_combinations_of_subsets() -> None:
    sources = {"IDRID": "IDRID", "IDRID25": "IDRID", "DDR": "DDR"}
    names = sorted(sources)
    assert expand_combinations(["IDRID25+DDR"], names, sources) == ["DDR+IDRID25"]
    assert expand_combinations("all", names, sources) == [
        "DDR", "IDRID", "IDRID25", "DDR+IDRID", "DDR+IDRID25",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="IDRID's images"):
        expand_combinations(["IDRID+IDRID25"], names, sources)


# ---------------------------------------------------------------- the workflow


def _study(fraction: float) -> dict[str, Any]:
    config = load_tiny_config()
    config["datasets"] = {
        "IDRID": config["datasets"]["IDRID"],
        "IDRID50": {"of": "IDRID", "split": {"train_fraction": fraction}},
    }
    config["synthetic"]["images"] = 12
    config["training"]["combinations"] = ["IDRID50"]
    config["merging"]["combinations"] = ["IDRID50"]
    return config


TARGETS = ("results/cache/IDRID", "results/cache/IDRID50")


def _run(workdir: Path, fraction: float) -> Counter[str]:
    workdir.mkdir(exist_ok=True)
    configfile = write_config(workdir / "config.yaml", _study(fraction))
    result = snakemake(workdir, configfile, "--cores", "1", *TARGETS)
    assert result.returncode == 0, result.stdout + result.stderr
    return executed_rules(result)


def _manifest(workdir: Path, dataset: str) -> pd.DataFrame:
    return pd.read_csv(workdir / "results/data" / dataset / "manifest.csv", dtype=str)


def _relative_manifest(workdir: Path) -> bytes:
    """The subset's manifest with the study folder's absolute path left out of its paths."""
    text = (workdir / "results/data/IDRID50/manifest.csv").read_bytes()
    return text.replace(str(workdir.resolve()).encode(), b"").replace(str(workdir).encode(), b"")


def test_the_workflow_indexes_and_caches_a_subset_and_reindexes_it_alone(tmp_path: Path) -> None:
    study_dir = tmp_path / "study"
    ran = _run(study_dir, 0.5)
    assert ran == Counter({"synth": 1, "index": 2, "preprocess": 2})
    source, subset = _manifest(study_dir, "IDRID"), _manifest(study_dir, "IDRID50")
    assert (subset["split"] == UNUSED).any() and (subset["split"] == TRAIN).any()
    assert list(source["image_id"][source["split"] != TRAIN]) == list(
        subset["image_id"][subset["split"].isin(["valid", "test"])]
    )
    cached = pd.read_csv(study_dir / "results/cache/IDRID50/index.csv", dtype=str)
    assert set(cached["image_id"]) == set(subset["image_id"][subset["split"] != UNUSED])

    assert _run(study_dir, 0.25) == Counter({"index": 1, "preprocess": 1})
    fresh = tmp_path / "fresh"
    shutil.copytree(study_dir / "resources", fresh / "resources", symlinks=True)
    assert _run(fresh, 0.25) == Counter({"index": 2, "preprocess": 2})
    assert _relative_manifest(study_dir) == _relative_manifest(fresh)
    quarter = _manifest(study_dir, "IDRID50")
    assert set(quarter["image_id"][quarter["split"] == TRAIN]) <= set(
        subset["image_id"][subset["split"] == TRAIN]
    )
