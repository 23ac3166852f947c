"""A dataset described only in the config (``layout: generic``): schema, scan, splits, errors."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest
import yaml
from support import REPO
from support.generic_tree import IDS, MASKS, write_generic_tree
from support.native_trees import write_mask

from lesionsoup.cli import main
from lesionsoup.data.datasets import ADAPTERS, DatasetError, index_dataset
from lesionsoup.data.datasets.generic import OPTIONS, adapter_for, configured_adapter
from lesionsoup.data.datasets.registry import NAME as REGISTRY_NAME

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
NAME = "EOPHTHA"


def generic_options(**changes: Any) -> dict[str, Any]:
    """The index options of the tree above (what the workflow passes from the config)."""
    return {"layout": "generic", "images": "images/*.jpg", "masks": MASKS, **changes}


def _index(root: Path, **changes: Any) -> pd.DataFrame:
    return index_dataset(NAME, root, generic_options(**changes))


def _datasets_schema() -> dict[str, Any]:
    schema = yaml.safe_load(SCHEMA.read_text())
    return {"$defs": schema["$defs"], **schema["properties"]["datasets"]}


def _normalised(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, Mapping):
        return {key: _normalised(item) for key, item in value.items()}
    return value


# ---------------------------------------------------------------- the config schema


def test_schema_entry_offers_exactly_the_adapter_options() -> None:
    ((pattern, entry),) = _datasets_schema()["patternProperties"].items()
    assert pattern == f"^{REGISTRY_NAME.pattern}$"  # the names the registry accepts
    properties = dict(entry["then"]["properties"])
    shared = {key: properties.pop(key) for key in ("root", "mask_threshold", "split", "uncertain")}
    assert shared["split"] == {"$ref": "#/$defs/split"}
    assert _normalised(properties) == _normalised(OPTIONS)


@pytest.mark.parametrize(
    ("name", "entry", "message"),
    [
        (NAME, {"layout": "generic", "root": "r", "images": "*.jpg"}, "'masks' is a required"),
        (NAME, {**generic_options(), "root": "r", "masks": {"EX": "a.png"}}, "not valid under any"),
        (NAME, {**generic_options(), "root": "r", "masks": {"XX": "{stem}"}}, "'XX' is not one"),
        (NAME, {**generic_options(), "root": "r", "colour": 1}, "'colour' was unexpected"),
        ("E-OPHTHA", {**generic_options(), "root": "r"}, "'E-OPHTHA' does not match any"),
        ("IDRID", {**generic_options(), "root": "r"}, "'images', 'layout', 'masks' were unexp"),
    ],
)
def test_schema_refuses_a_bad_generic_entry(name: str, entry: dict[str, Any], message: str) -> None:
    validator = jsonschema.Draft202012Validator(_datasets_schema())
    validator.validate(
        {NAME: {**generic_options(), "root": "data/eophtha"}, "IDRID": {"root": "i"}}
    )
    errors = [error.message for error in validator.iter_errors({name: entry})]
    assert any(message in error for error in errors), errors


# ---------------------------------------------------------------- indexing


def test_a_generic_dataset_is_indexed_from_its_patterns(tmp_path: Path) -> None:
    manifest = _index(write_generic_tree(tmp_path / "eophtha"), patient="^(p\\d+)_")
    assert NAME not in ADAPTERS  # built from the options, never registered
    assert sorted(manifest["image_id"]) == sorted(IDS) and (manifest["dataset"] == NAME).all()
    assert manifest["mask_EX"].str.endswith("_EX.png").all() and (manifest["mask_MA"] == "").all()
    left = manifest["image_id"].str.endswith("_L")
    assert (manifest.loc[left, "mask_HE"] != "").all() and (
        manifest.loc[~left, "mask_HE"] == ""
    ).all()
    assert (manifest["patient"] == manifest["image_id"].str[:2]).all()
    assert (manifest.groupby("patient")["split"].nunique() == 1).all()  # eyes stay together
    assert set(manifest["split"]) == {"train", "valid", "test"}
    assert set(zip(manifest["width"], manifest["height"], strict=True)) == {(12, 8)}


def test_a_split_file_is_the_official_split_and_valid_is_carved_from_train(
    tmp_path: Path,
) -> None:
    root = write_generic_tree(tmp_path)
    rows = [f"{image_id},{'test' if image_id.startswith('p3') else 'train'}" for image_id in IDS]
    (root / "splits.csv").write_text("image_id,split\n" + "\n".join(rows) + "\n")
    manifest = _index(root, split_file="splits.csv", split={"valid": 0.3, "seed": 1})
    split = manifest.set_index("image_id")["split"]
    assert (split[["p3_L", "p3_R"]] == "test").all()
    assert set(split.drop(["p3_L", "p3_R"])) == {"train", "valid"}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["p1_L,val"], r"splits.csv, line 2: split 'val' is not one of"),
        ([f"{image_id},train" for image_id in IDS] + ["p9_L,test"], "'p9_L' has no image"),
        (["p1_L,train"], r"no split for 5 image\(s\)"),
    ],
)
def test_a_bad_split_file_names_the_file_and_row(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    root = write_generic_tree(tmp_path)
    (root / "splits.csv").write_text("\n".join(["image_id,split", *lines]) + "\n")
    with pytest.raises(DatasetError, match=message):
        _index(root, split_file="splits.csv")


def test_a_mask_file_of_no_image_is_an_error_not_a_skip(tmp_path: Path) -> None:
    root = write_generic_tree(tmp_path)
    write_mask(root / "annotations" / "EX" / "p1_l_EX.png")  # a misspelt id
    with pytest.raises(DatasetError, match=r"1 EX mask file\(s\) .* match no image: .*p1_l_EX"):
        _index(root)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"images": "photos/*.png"}, DatasetError, "no image matches the pattern 'photos/"),
        ({"masks": {"EX": "EX/mask.png"}}, ValueError, "lacks {stem}"),
        ({"masks": {"SE": "{stem}.png"}}, ValueError, r"unknown lesion\(s\) \['SE'\]"),
        ({"patient": "^p\\d"}, ValueError, "needs a group"),
        ({"patient": "^(q\\d)_"}, DatasetError, "'p1_L' does not match"),
        ({"hemorrhage": "union"}, ValueError, r"unknown option\(s\) \['hemorrhage'\]"),
    ],
)
def test_a_bad_option_fails_with_what_is_wrong(
    tmp_path: Path, changes: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        _index(write_generic_tree(tmp_path), **changes)


def test_a_name_is_checked_and_an_unknown_one_hints_at_the_layout() -> None:
    with pytest.raises(ValueError, match="must match"):
        configured_adapter("e-ophtha", generic_options())
    with pytest.raises(ValueError, match="unknown dataset 'EOPHTHA'.*needs `layout: generic`"):
        adapter_for(NAME, {"root": "r"})
    assert adapter_for("IDRID", {"root": "r"}) is ADAPTERS["IDRID"]
    assert configured_adapter(NAME, {**generic_options(), "mask_threshold": 1}).mask_threshold == 1


def test_lesionsoup_index_takes_a_generic_dataset_from_its_options(tmp_path: Path) -> None:
    root = write_generic_tree(tmp_path / "eophtha")
    output = tmp_path / "manifest.csv"
    options = json.dumps(generic_options())
    assert main(["index", NAME, str(root), "-o", str(output), "--options", options]) == 0
    assert len(pd.read_csv(output)) == len(IDS)


def test_a_mask_not_fetched_is_an_error_or_an_image_left_out_never_no_lesion(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A dangling link in place of a mask (git-annex, DVC): named, never read as no lesion."""
    root = write_generic_tree(tmp_path / "eophtha")
    mask = root / "annotations" / "HE" / "p2_L.png"
    mask.unlink()
    mask.symlink_to(root / ".git" / "annex" / "objects" / "p2_L")  # not fetched
    with pytest.raises(DatasetError, match="cannot be opened") as error:
        index_dataset(NAME, root, generic_options(), unrecognised="error")
    assert f"{mask} (the HE mask of p2_L: a symbolic link to nothing" in str(error.value)
    manifest = index_dataset(NAME, root, generic_options(), unrecognised="warn")
    assert sorted(manifest["image_id"]) == sorted(set(IDS) - {"p2_L"})
    assert "1 image(s) left out of the manifest, their lesions unknown" in caplog.text
    assert str(mask) in caplog.text
