"""Both shipped configs validate against the schema, with defaults filled in."""

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from lesionsoup.plan import study

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


@pytest.mark.parametrize("name", ["config.yaml", "config/paper.yaml", "tests/configs/tiny.yaml"])
def test_shipped_config_validates(name):
    config = yaml.safe_load((REPO / name).read_text())
    validate(config, SCHEMA)
    assert config["preprocess"]["on_bad_image"] in ("fail", "skip")
    for run in study.runs(config):
        settings = study.recipe_settings(config, run.recipe, run.seed)
        assert settings["seed"] == run.seed


def test_paper_config_is_the_papers_study():
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    validate(config, SCHEMA)
    assert len(study.combinations(config)) == 31
    assert config["preprocess"]["size"] == 1536
    assert study.model_spec(config).encoder == "resnet101"
    assert study.recipe_settings(config, "base", 0)["patch_size"] == 512


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
