"""The shipped configs validate against the schema, with defaults filled in."""

import pytest
import yaml
from snakemake.utils import validate
from support import REPO
from support.config_validation import SCHEMAS, snakefile_validation

from lesionsoup.plan import report, study
from lesionsoup.plan.validation import ConfigError, validate_config

SCHEMA = str(SCHEMAS / "config.schema.yaml")


SHIPPED = [
    "config.yaml",
    "config/paper.yaml",
    "config/fissionfusion.yaml",
    "tests/configs/tiny.yaml",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_validates(name):
    config = yaml.safe_load((REPO / name).read_text())
    validate(config, SCHEMA)
    assert config["preprocess"]["on_bad_image"] in ("fail", "skip")
    for run in study.runs(config):
        settings = study.recipe_settings(config, run.recipe, run.seed)
        assert settings["seed"] == run.seed


def test_paper_config_is_a_complete_study_of_its_own():
    """Its values are held to the authors' by the ledger (tests/workflow/test_fidelity.py); here: it
    validates, trains every combination, and brings every section of its own."""
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    validate(config, SCHEMA)
    assert len(study.combinations(config)) == 31
    assert {"hpo", "merging", "report"} <= set(config)  # its own, never the demo's


def test_a_minimal_study_gets_every_section_default_of_the_schemas():
    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    minimal = {key: config[key] for key in ("synthetic", "datasets", "preprocess", "model")}
    minimal["training"] = {"combinations": ["IDRID"], "recipes": {"base": {}}}
    minimal["evaluation"] = {}
    filled = snakefile_validation(minimal)
    assert filled["merging"]["checkpoint"] == "last"
    assert filled["merging"]["bn_recompute"] == {"patches": "epoch", "batch_size": 8, "seed": 0}
    assert filled["hpo"]["pruner"]["kind"] == "median" and filled["hpo"]["recipes"] == []
    assert filled["evaluation"]["inference"]["mode"] == "whole"
    assert filled["datasets"]["RETLES"]["value_127"] == "ignore"
    assert filled["results"]["mode"] == "group"
    # the report's schema defaults are the ones its planner documents
    assert filled["report"] == report.report_settings({})


def test_recipe_overrides_defaults_and_seed_wins():
    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    validate(config, SCHEMA)
    settings = study.recipe_settings(config, "base", 7)
    assert settings["steps"] == config["training"]["recipes"]["base"]["steps"]
    assert settings["patch_size"] == config["training"]["defaults"]["patch_size"]
    assert settings["seed"] == 7
    with pytest.raises(ValueError, match="nope"):
        study.recipe_settings(config, "nope", 0)
    assert study.warmup_settings(config)["freeze_encoder"] is True


def test_a_misspelt_key_is_named_with_the_allowed_keys_and_no_schema_dump():
    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    config["preprocess"]["sise"] = 256
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMAS / "config.schema.yaml")
    short = str(error.value)
    assert short.startswith("config key preprocess.sise: Additional properties are not allowed")
    assert "allowed: mask_resize, on_bad_image, size, threads, unrecognised" in short
    assert "Failed validating" not in short and "\n" not in short
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMAS / "config.schema.yaml", verbose=True)
    assert str(error.value).startswith(short.split(" (snakemake")[0])
    assert "Failed validating 'additionalProperties'" in str(error.value)


def test_a_value_outside_an_enum_lists_the_choices():
    config = yaml.safe_load((REPO / "tests/configs/tiny.yaml").read_text())
    config["datasets"]["RETLES"]["value_127"] = "maybe"
    with pytest.raises(ConfigError, match=r"datasets\.RETLES\.value_127: 'maybe' is not one of"):
        validate_config(config, SCHEMAS / "config.schema.yaml")
