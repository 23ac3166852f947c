"""Config -> ingredient runs: grid names, settings of grid/SWA/FGG runs, pools, targets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jsonschema
import pytest
import yaml

from lesionsoup.cli import build_parser
from lesionsoup.plan.ingredients import (
    ensemble_arguments,
    grid_recipes,
    ingredient_runs,
    init_for,
    merged_models,
    pool_inputs,
    pool_runs,
    settings_for,
    soup_arguments,
    soup_settings,
    value_token,
)
from lesionsoup.plan.merge_rules import BN_POLICIES, DEFAULT_GROUP_BY, RULES, BatchNormSample
from lesionsoup.plan.study import Run

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "merging.schema.yaml"


def make_config(**merging) -> dict:
    return {
        "datasets": {"IDRID": {}, "DDR": {}},
        "training": {
            "combinations": ["IDRID"],
            "seeds": [0, 1],
            "defaults": {"batch_size": 4, "patch_size": 64},
            "recipes": {"base": {"steps": 30, "lr": 0.002, "warmup_steps": 5}},
        },
        "merging": {
            "grid": {
                "recipe": "base",
                "seeds": [0],
                "values": {"lr": [0.001, 0.0025], "augmentation": ["light", "medium"]},
            },
            "swa": {
                "base": "base",
                "settings": {"steps": 12, "lr": 5e-4, "start_lr": 2e-3, "cycle_steps": 4},
            },
            "fgg": {"settings": {"steps": 8, "lr": 1e-5, "min_lr": 1e-8, "cycle_steps": 4}},
            "soups": {"uniform": {}, "swa": {}, "GoU": {"ingredients": ["grid", "fgg"]}},
            "ensembles": {"top2": {"top": 2}},
            **merging,
        },
    }


def test_value_tokens_have_no_dots_and_read_back():
    assert [value_token(v) for v in (0.001, 0.0025, 0.5, 2.0, 100.0, 3, "medium", True)] == [
        "1e-3", "25e-4", "5e-1", "2", "100", "3", "medium", "true",
    ]  # fmt: skip
    for value in (0.001, 0.0025, 0.5, 1e-5, 0.3):
        mantissa, _, exponent = value_token(value).partition("e")
        assert float(mantissa) * 10 ** int(exponent or 0) == pytest.approx(value)
    with pytest.raises(ValueError, match="cannot name a recipe"):
        value_token("two words")


def test_grid_names_are_readable_and_independent_of_key_order():
    config = make_config()
    expected = [
        "grid-auglight-lr1e-3",
        "grid-auglight-lr25e-4",
        "grid-augmedium-lr1e-3",
        "grid-augmedium-lr25e-4",
    ]
    assert grid_recipes(config) == expected
    values = config["merging"]["grid"]["values"]
    config["merging"]["grid"]["values"] = dict(reversed(list(values.items())))
    assert grid_recipes(config) == expected


def test_grid_run_settings_change_only_their_point():
    config = make_config()
    settings = settings_for(config, "grid-augmedium-lr25e-4", 3)
    assert settings["lr"] == 0.0025 and settings["augmentation"] == "medium"
    assert settings["seed"] == 3
    assert settings["steps"] == 30 and settings["warmup_steps"] == 5
    assert settings["batch_size"] == 4
    assert init_for("IDRID", "grid-augmedium-lr25e-4", 3) == "results/models/IDRID/init.safetensors"


def test_named_recipes_keep_their_settings():
    config = make_config()
    assert settings_for(config, "base", 1)["lr"] == 0.002
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        settings_for(config, "nope", 0)


def test_swa_run_continues_its_base_with_its_own_schedule():
    config = make_config()
    settings = settings_for(config, "swa-base", 1)
    assert settings["schedule"] == "swa"
    assert (settings["steps"], settings["lr"], settings["start_lr"]) == (12, 5e-4, 2e-3)
    assert settings["warmup_steps"] == 0  # the base's cosine warm-up is not inherited
    assert settings["batch_size"] == 4 and settings["seed"] == 1
    assert init_for("IDRID", "swa-base", 1) == "results/models/IDRID/base/seed1/last.safetensors"
    assert pool_runs(config, "IDRID", "swa") == [Run("IDRID", "swa-base", 0)]


def test_fgg_runs_start_from_every_grid_run():
    config = make_config()
    settings = settings_for(config, "fgg-grid-auglight-lr25e-4", 0)
    assert settings["schedule"] == "triangular"
    assert (settings["lr"], settings["min_lr"], settings["cycle_steps"]) == (1e-5, 1e-8, 4)
    assert settings["augmentation"] == "light"  # inherited from the base grid point
    assert init_for("IDRID", "fgg-grid-auglight-lr25e-4", 0) == (
        "results/models/IDRID/grid-auglight-lr25e-4/seed0/last.safetensors"
    )
    runs = pool_runs(config, "IDRID", "fgg")
    assert [run.recipe for run in runs] == [f"fgg-{name}" for name in grid_recipes(config)]


def test_continuation_of_an_unknown_base_or_section_is_refused():
    with pytest.raises(ValueError, match="unknown recipe 'other'"):
        settings_for(make_config(), "swa-other", 0)
    config = make_config()
    del config["merging"]["fgg"]
    with pytest.raises(ValueError, match="merging.fgg"):
        settings_for(config, "fgg-grid-auglight-lr1e-3", 0)


def test_named_recipe_may_not_look_generated():
    config = make_config()
    config["training"]["recipes"]["grid-x"] = {"steps": 2}
    with pytest.raises(ValueError, match="grid-x"):
        ingredient_runs(config)


def test_ingredient_runs_cover_grid_fgg_and_swa():
    runs = ingredient_runs(make_config())
    recipes = [run.recipe for run in runs]
    assert len(runs) == 4 + 4 + 1
    assert recipes.count("swa-base") == 1
    assert sum(recipe.startswith("fgg-grid-") for recipe in recipes) == 4


def test_pool_inputs_name_checkpoints_snapshot_folders_and_the_hpo_list():
    config = make_config(checkpoint="best")
    with pytest.raises(ValueError, match="pool 'hpo' for IDRID: no Optuna study"):
        pool_inputs(config, "IDRID", ["hpo"])
    config["hpo"] = {"recipes": ["base"], "n_trials": 2}
    inputs = pool_inputs(config, "IDRID", ["grid", "fgg", "hpo", "base"])
    assert inputs[0] == "results/models/IDRID/grid-auglight-lr1e-3/seed0/best.safetensors"
    assert "results/models/IDRID/fgg-grid-auglight-lr1e-3/seed0/snapshots" in inputs
    assert "results/hpo/IDRID/base/ingredients.json" in inputs  # what the hpo export writes
    assert inputs[-2:] == [
        "results/models/IDRID/base/seed0/best.safetensors",
        "results/models/IDRID/base/seed1/best.safetensors",
    ]
    with pytest.raises(ValueError, match="unknown ingredient pool 'nope'"):
        pool_inputs(config, "IDRID", ["nope"])


def test_soup_defaults_depend_on_the_rule():
    config = make_config(bn_recompute={"patches": 16})
    assert soup_settings(config, "swa") == {
        "rule": "swa",
        "ingredients": ["swa"],
        "bn_policy": "recompute",
        "group_by": "lr",
        "bn_recompute": {"patches": 16, "batch_size": 8, "seed": 0},
    }
    uniform = soup_settings(config, "uniform")
    assert (uniform["ingredients"], uniform["bn_policy"], uniform["bn_recompute"]) == (
        ["grid"], "average", None,
    )  # fmt: skip
    assert soup_settings(config, "GoU")["rule"] == "GoU"


def test_rule_arguments_parse_as_the_cli_expects():
    config = make_config(bn_recompute={"patches": 16})
    merge = soup_arguments(config, "swa").split()
    args = build_parser().parse_args(["merge", "-o", "m.safetensors", *merge, "--cache", "c", "x"])
    assert (args.rule, args.bn_policy, args.group_by) == ("swa", "recompute", "lr")
    assert (args.bn_patches, args.bn_batch_size, args.bn_seed) == (16, 8, 0)
    assert "--bn-patches" not in soup_arguments(config, "uniform")
    ensemble = ensemble_arguments(config, "top2").split()
    args = build_parser().parse_args(["ensemble", "-o", "e.json", *ensemble, "--cache", "c", "x"])
    assert args.top == 2


def test_merged_targets_list_soups_and_ensembles_per_combination():
    config = make_config(combinations=["IDRID", "DDR+IDRID"])
    targets = [path for path, _, _ in merged_models(config)]
    assert len(targets) == 2 * 4
    assert "results/merged/DDR+IDRID/GoU.safetensors" in targets
    assert "results/merged/IDRID/ensemble-top2.json" in targets


def test_schema_accepts_the_config_and_rejects_misspelt_keys():
    schema = yaml.safe_load(SCHEMA.read_text())
    jsonschema.validate(make_config()["merging"], schema)
    with pytest.raises(jsonschema.ValidationError, match="top_k"):
        jsonschema.validate({"ensembles": {"a": {"top_k": 2}}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"soups": {"ensemble-x": {}}}, schema)


def test_schema_lists_the_merge_rule_table():
    """A YAML schema cannot import the table, so its enums and defaults are checked here."""
    schema = yaml.safe_load(SCHEMA.read_text())
    soup = schema["properties"]["soups"]["additionalProperties"]["properties"]
    assert soup["rule"]["enum"] == list(RULES)
    assert tuple(soup["bn_policy"]["enum"]) == BN_POLICIES
    assert soup["group_by"]["default"] == DEFAULT_GROUP_BY
    sample = schema["properties"]["bn_recompute"]["properties"]
    assert {key: value["default"] for key, value in sample.items()} == dataclasses.asdict(
        BatchNormSample()
    )
