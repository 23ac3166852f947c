"""One source for the datasets: the registry, what reads it, and a sixth dataset added in a test.

The workflow's config schema is a file (Snakemake validates against files, not
dicts), so the tests here hold every dataset part of it to the registry: a new
adapter whose entry is missing from the schema fails them, with the entry to add.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, get_args, get_type_hints

import cv2
import jsonschema
import numpy as np
import pytest
import yaml
from support import REPO
from support.native_trees import write_image, write_mask

from lesionsoup.cli import main
from lesionsoup.core.combos import DATASET_NAME
from lesionsoup.core.lesions import Lesion
from lesionsoup.core.report_defaults import REPORT_DEFAULTS
from lesionsoup.data.datasets import (
    ADAPTERS,
    DatasetAdapter,
    default_styles,
    get_adapter,
    index_dataset,
    register,
)
from lesionsoup.data.datasets.native import NativeImage, attach_mask, image_files, require_folder
from lesionsoup.data.datasets.registry import COARSE
from lesionsoup.data.preprocess import MaskRules
from lesionsoup.data.synthetic import LAYOUTS
from lesionsoup.data.synthetic import register as register_layout
from lesionsoup.data.synthetic.fundus import SyntheticFundus
from lesionsoup.data.synthetic.generator import generate
from lesionsoup.data.synthetic.layout import (
    SyntheticImage,
    SyntheticLayout,
    binary,
    save,
)
from lesionsoup.data.synthetic.maples import RELEASE_TREE
from lesionsoup.plan import study
from lesionsoup.plan.report import report_settings

SCHEMAS = REPO / "workflow" / "schemas"


def _schema(name: str) -> dict[str, Any]:
    return yaml.safe_load((SCHEMAS / name).read_text())


def _normalised(value: Any) -> Any:
    """``value`` with the whitespace of every string collapsed (YAML folds long text)."""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, Mapping):
        return {key: _normalised(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    return value


def _split_property(adapter: DatasetAdapter) -> dict[str, Any]:
    """The ``split`` options a dataset's official splits leave to choose (only the training
    subset, ``train_fraction``, for all three)."""
    if "valid" in adapter.official_splits:
        return {"split": {"$ref": "#/$defs/train_split"}}
    kind = "valid_split" if adapter.official_splits else "split"
    return {"split": {"$ref": f"#/$defs/{kind}"}}


def _uncertain_property(adapter: DatasetAdapter) -> dict[str, Any]:
    value = adapter.uncertain_value
    if value is None:
        return {}
    choices = list(get_args(get_type_hints(MaskRules)["uncertain_as"]))
    description = (
        f"Mask value {value} marks annotations the {adapter.name} authors excluded: "
        "`ignore` leaves them out of the loss and every metric."
    )
    return {
        f"value_{value}": {
            "enum": choices,
            "default": MaskRules.uncertain_as,
            "description": description,
        }
    }


def expected_config_entry(adapter: DatasetAdapter) -> dict[str, Any]:
    """What ``config.schema.yaml`` must say under ``datasets: <name>``, from the registry."""
    properties = {
        "root": {"$ref": "#/$defs/root"},
        "mask_threshold": {"$ref": "#/$defs/mask_threshold", "default": adapter.mask_threshold},
        **_split_property(adapter),
        **_uncertain_property(adapter),
        **adapter.options,
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["root"],
        "properties": properties,
    }


def coarse_datasets() -> list[str]:
    return sorted(name for name, style in default_styles().items() if style == COARSE)


# ---------------------------------------------------------------- the schema files


def test_config_schema_offers_exactly_the_registered_datasets_and_options() -> None:
    datasets = _schema("config.schema.yaml")["properties"]["datasets"]
    expected = {name: expected_config_entry(adapter) for name, adapter in ADAPTERS.items()}
    for name, entry in expected.items():
        assert _normalised(datasets["properties"].get(name)) == _normalised(entry), (
            f"workflow/schemas/config.schema.yaml, datasets: {name} should read\n"
            + yaml.safe_dump({name: entry}, sort_keys=False)
        )
    assert set(datasets["properties"]) == set(expected), "schema entries of no registered dataset"
    assert datasets["additionalProperties"] is False


def test_every_dataset_list_of_the_schemas_is_the_registry() -> None:
    schema = _schema("config.schema.yaml")
    assert sorted(schema["$defs"]["registered_dataset"]["enum"]) == sorted(ADAPTERS)
    styles = schema["properties"]["synthetic"]["properties"]["dataset_styles"]
    assert styles["default"] == default_styles()
    assert styles["propertyNames"] == {"$ref": "#/$defs/registered_dataset"}
    # Lists that may name a dataset of one's own take any dataset name (planning checks
    # it is configured): the pattern is the combination name's dataset part.
    assert schema["$defs"]["dataset"]["pattern"] == f"^{DATASET_NAME.pattern}$"
    tests = schema["properties"]["evaluation"]["properties"]["test_datasets"]["oneOf"][1]
    assert tests["items"] == {"$ref": "#/$defs/dataset"}
    coarse = _schema("report.schema.yaml")["properties"]["coarse"]
    assert coarse["items"] == {"type": "string", "pattern": f"^{DATASET_NAME.pattern}$"}
    assert sorted(coarse["default"]) == coarse_datasets()
    assert sorted(REPORT_DEFAULTS["coarse"]) == coarse_datasets()


def test_dataset_styles_refuse_an_unregistered_dataset() -> None:
    schema = _schema("config.schema.yaml")
    synthetic = {"$defs": schema["$defs"], **schema["properties"]["synthetic"]}
    validator = jsonschema.Draft202012Validator(synthetic)
    validator.validate({"enabled": True, "dataset_styles": {"RETLES": "fine"}})
    with pytest.raises(jsonschema.ValidationError, match="EYEPACS"):
        validator.validate({"enabled": True, "dataset_styles": {"EYEPACS": "fine"}})


def test_dataset_lists_take_a_dataset_of_ones_own_and_refuse_an_unconfigured_one() -> None:
    config = {
        "datasets": {"IDRID": {}, "EOPHTHA2": {"layout": "generic"}},
        "evaluation": {"test_datasets": ["EOPHTHA2"]},
        "report": {"coarse": ["EOPHTHA2"]},
    }
    schema = _schema("config.schema.yaml")
    tests = {
        "$defs": schema["$defs"],
        **schema["properties"]["evaluation"]["properties"]["test_datasets"],
    }
    jsonschema.Draft202012Validator(tests).validate(["EOPHTHA2", "IDRID"])
    assert study.test_datasets(config) == ["EOPHTHA2"]
    assert report_settings(config)["coarse"] == ["EOPHTHA2"]
    assert report_settings({**config, "report": {}})["coarse"] == REPORT_DEFAULTS["coarse"]
    with pytest.raises(ValueError, match=r"evaluation.test_datasets: \['EOPHTA'\] not configured"):
        study.test_datasets({**config, "evaluation": {"test_datasets": ["IDRID", "EOPHTA"]}})
    assert report_settings({**config, "report": {"coarse": ["RETLES"]}})["coarse"] == ["RETLES"]
    with pytest.raises(ValueError, match=r"report.coarse: \['RETLESS'\] not configured"):
        report_settings({**config, "report": {"coarse": ["RETLESS"]}})


# ---------------------------------------------------------------- the registry itself


def test_every_adapter_has_a_synthetic_layout_and_unique_streams() -> None:
    assert list(LAYOUTS) == list(ADAPTERS), "every registered dataset needs a synthetic writer"
    streams = [stream for layout in LAYOUTS.values() for stream in layout.streams]
    assert len(streams) == len(set(streams))
    assert get_adapter("RETLES").style == COARSE
    with pytest.raises(ValueError, match="unknown dataset 'EYEPACS'"):
        get_adapter("EYEPACS")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "IDRID"}, "registered twice"),
        ({"name": "E-OPHTHA"}, "must match"),
    ],
)
def test_register_refuses_a_taken_or_bad_name(change: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        register(replace(ADAPTERS["IDRID"], **change))
    assert "E-OPHTHA" not in ADAPTERS


# ---------------------------------------------------------------- a sixth dataset
#
# Everything a sixth dataset needs in code is below: its layout, its scan, its
# synthetic writer and the two ``register`` calls. A real one is a module of its own
# in ``lesionsoup/data/datasets/`` and its writer one in ``lesionsoup/data/synthetic/``,
# each plus its name on the import line of that package's ``__init__``, and its entry
# in the config schema (which the tests above ask for).

TOY = "TOY"
TOY_LESIONS = (Lesion.EX, Lesion.MA)


def _toy_scan(root: Path, options: Mapping[str, Any]) -> list[NativeImage]:
    """``<root>/images/<id>.png`` with ``<root>/<mask_folder>/<lesion>/<id>.png``."""
    images = {
        image_id: NativeImage(image_id, path)
        for image_id, path in image_files(require_folder(root, "images")).items()
    }
    for lesion in TOY_LESIONS:
        for image_id, mask in image_files(
            require_folder(root, options["mask_folder"], lesion)
        ).items():
            attach_mask(images, image_id, lesion, mask)
    return list(images.values())


def _toy_names(count: int) -> list[str]:
    """``<patient>_<eye>``, two eyes per patient."""
    return [f"toy{index // 2:03d}_{'ab'[index % 2]}" for index in range(count)]


def _toy_write(
    image: SyntheticImage,
    fundus: SyntheticFundus,
    masks: dict[Lesion, np.ndarray],
    rng: np.random.Generator,
) -> None:
    save(image.tree() / "images" / f"{image.name}.png", fundus.image)
    for lesion in TOY_LESIONS:
        save(image.tree() / "masks" / lesion / f"{image.name}.png", binary(masks[lesion]))


TOY_ADAPTER = DatasetAdapter(
    name=TOY,
    scan=_toy_scan,
    options={"mask_folder": {"type": "string", "default": "masks", "description": "Mask folder."}},
    patient=lambda image_id: image_id.rsplit("_", 1)[0],
    style=COARSE,
)
TOY_LAYOUT = SyntheticLayout(stream=99, sizes=((300, 400),), names=_toy_names, write=_toy_write)


@pytest.fixture
def toy_adapter() -> Iterator[DatasetAdapter]:
    """The sixth dataset's adapter, registered for one test and taken out again with any
    synthetic layout the test registered for it."""
    register(TOY_ADAPTER)
    try:
        yield TOY_ADAPTER
    finally:
        del ADAPTERS[TOY]
        LAYOUTS.pop(TOY, None)


@pytest.fixture
def toy(toy_adapter: DatasetAdapter) -> DatasetAdapter:
    """The sixth dataset with its synthetic layout, registered for one test."""
    register_layout(TOY, TOY_LAYOUT)
    return toy_adapter


@pytest.mark.parametrize(
    ("dataset", "layout", "message"),
    [
        ("OTHER", TOY_LAYOUT, "unregistered dataset 'OTHER'"),
        ("IDRID", TOY_LAYOUT, "'IDRID' has a synthetic layout already"),
        (TOY, replace(TOY_LAYOUT, stream=0), r"synthetic streams \{0: 'IDRID'\} are taken"),
        (TOY, replace(TOY_LAYOUT, companion=TOY_LAYOUT), r"synthetic streams \(99, 99\) repeat"),
    ],
)
def test_register_layout_refuses_an_unknown_or_taken_dataset_and_a_taken_or_repeated_stream(
    toy_adapter: DatasetAdapter, dataset: str, layout: SyntheticLayout, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        register_layout(dataset, layout)
    assert LAYOUTS["IDRID"] is not layout and TOY not in LAYOUTS and "OTHER" not in LAYOUTS


def test_a_sixth_dataset_is_generated_and_indexed(toy: DatasetAdapter, tmp_path: Path) -> None:
    assert default_styles()[TOY] == COARSE
    roots = generate(tmp_path, images=6, seed=0, scale=0.2, datasets=[TOY], workers=2)
    assert set(roots) == {TOY}
    manifest = index_dataset(TOY, roots[TOY])
    assert len(manifest) == 6 and (manifest["dataset"] == TOY).all()
    assert set(manifest["split"]) == {"train", "valid", "test"}  # seeded: it has no official one
    assert (manifest["patient"] == manifest["image_id"].str.rsplit("_", n=1).str[0]).all()
    assert (manifest.groupby("patient")["split"].nunique() == 1).all()  # eyes stay together
    assert (manifest["mask_MA"] != "").all() and (manifest["mask_HE"] == "").all()
    assert cv2.imread(manifest.loc[0, "image_path"]).shape == (60, 80, 3)


def test_a_sixth_dataset_options_reach_its_scan(toy: DatasetAdapter, tmp_path: Path) -> None:
    root = tmp_path / "toy"
    write_image(root / "images" / "toy000_a.png")
    for lesion in TOY_LESIONS:
        write_mask(root / "labels" / lesion / "toy000_a.png")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['hemorrhage'\] for TOY"):
        index_dataset(TOY, root, {"hemorrhage": "union"})
    with pytest.raises(ValueError, match="expected the folder 'masks/EX'"):
        index_dataset(TOY, root)  # the default mask folder
    manifest = index_dataset(TOY, root, {"mask_folder": "labels", "split": {"test": 0.5}})
    assert manifest.loc[0, "mask_EX"].endswith("labels/EX/toy000_a.png")


def test_a_sixth_dataset_joins_the_command_line(
    toy: DatasetAdapter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["index", "--help"])
    assert "TOY: mask_folder" in " ".join(capsys.readouterr().out.split())
    assert main(["synth", "--out", str(tmp_path), "--images", "1", "--scale", "0.02"]) == 0
    assert {path.name for path in tmp_path.iterdir()} == {*ADAPTERS, RELEASE_TREE}
