"""Config -> ingredient runs: grid names, settings of grid/SWA/FGG runs, pools, targets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jsonschema
import pytest
import yaml
from support import REPO
from support.ingredients import make_config
from support.workflow import load_tiny_config, snakemake, write_config

from lesionsoup.cli import build_parser
from lesionsoup.core import paths
from lesionsoup.core.merge_rules import (
    BN_POLICIES,
    DEFAULT_GROUP_BY,
    DEFAULT_PART,
    PARTS,
    RULES,
    BatchNormSample,
)
from lesionsoup.plan import hpo, study
from lesionsoup.plan.ingredients import (
    FGG_BASES,
    ensemble_arguments,
    fgg_bases,
    grid_recipes,
    ingredient_runs,
    init_for,
    merged_models,
    merging_combinations,
    one_run_methods,
    optimizer_input,
    pool_inputs,
    pool_runs,
    settings_for,
    soup_arguments,
    soup_inputs,
    soup_methods,
    soup_settings,
    soup_start,
    train_arguments,
    value_token,
)
from lesionsoup.plan.study import Run, runs

SCHEMA = REPO / "workflow" / "schemas" / "merging.schema.yaml"


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
    assert init_for(config, "IDRID", "grid-augmedium-lr25e-4", 3) == [
        "results/models/IDRID/init.safetensors"
    ]


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
    assert init_for(config, "IDRID", "swa-base", 1) == [
        "results/models/IDRID/base/seed1/last.safetensors"
    ]
    assert pool_runs(config, "IDRID", "swa") == [Run("IDRID", "swa-base", 0)]


def test_fgg_runs_start_from_the_best_checkpoint_of_one_grid_run_per_learning_rate():
    config = make_config()
    settings = settings_for(config, "fgg-grid-auglight-lr25e-4", 0)
    assert settings["schedule"] == "triangular"
    assert (settings["lr"], settings["min_lr"], settings["cycle_steps"]) == (1e-5, 1e-8, 4)
    assert settings["augmentation"] == "light"  # inherited from the base grid point
    assert init_for(config, "IDRID", "fgg-grid-auglight-lr25e-4", 0) == [
        "results/models/IDRID/grid-auglight-lr25e-4/seed0/best.safetensors"
    ]
    assert optimizer_input("IDRID", "fgg-grid-auglight-lr25e-4", 0) == [
        "results/models/IDRID/grid-auglight-lr25e-4/seed0/optimizer"
    ]
    # per_lr (default): each rate's grid point with the other settings' first listed values
    runs = pool_runs(config, "IDRID", "fgg")
    assert [run.recipe for run in runs] == ["fgg-grid-auglight-lr1e-3", "fgg-grid-auglight-lr25e-4"]
    config["merging"]["fgg"]["base_point"] = {"augmentation": "medium"}
    assert [run.recipe for run in fgg_bases(config, "IDRID")] == [
        "grid-augmedium-lr1e-3",
        "grid-augmedium-lr25e-4",
    ]
    config["merging"]["grid"]["seeds"] = [3, 4]
    assert {run.seed for run in fgg_bases(config, "IDRID")} == {3}  # one base per rate
    config["merging"]["fgg"]["bases"] = "every"
    runs = pool_runs(config, "IDRID", "fgg")
    assert [(run.recipe, run.seed) for run in runs] == [
        (f"fgg-{name}", seed) for name in grid_recipes(config) for seed in (3, 4)
    ]
    config["merging"]["fgg"].update(bases="per_lr", base_point={"augmentation": "heavy"})
    with pytest.raises(ValueError, match="base_point: augmentation='heavy'"):
        fgg_bases(config, "IDRID")


def test_bases_keep_the_optimiser_state_their_continuations_load():
    """FGG bases keep the state of ``best`` (FissionFusion), SWA bases that of ``last`` (SWALR
    continues the base's optimiser); no other run keeps any."""
    config = make_config()
    base = "results/models/IDRID/grid-auglight-lr1e-3/seed0"
    assert train_arguments(config, "IDRID", "grid-auglight-lr1e-3", 0) == "--keep-optimizer best"
    assert train_arguments(config, "IDRID", "grid-augmedium-lr1e-3", 0) == ""
    assert train_arguments(config, "IDRID", "base", 0) == "--keep-optimizer last"
    assert train_arguments(config, "IDRID", "base", 1) == ""  # not an SWA seed
    assert train_arguments(config, "IDRID", "fgg-grid-auglight-lr1e-3", 0) == (
        f"--init-optimizer {base}/optimizer/best.safetensors"
    )
    assert train_arguments(config, "IDRID", "swa-base", 0) == (
        "--init-optimizer results/models/IDRID/base/seed0/optimizer/last.safetensors"
    )
    arguments = ["train", "-o", "run", "--model", "{}", "--settings", "{}", "--cache", "c"]
    for recipe, keep, start in (
        ("grid-auglight-lr1e-3", ["best"], None),
        ("fgg-grid-auglight-lr1e-3", [], Path(f"{base}/optimizer/best.safetensors")),
    ):
        options = train_arguments(config, "IDRID", recipe, 0).split()
        args = build_parser().parse_args([*arguments, *options])
        assert (args.keep_optimizer, args.init_optimizer) == (keep, start)


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
    assert len(runs) == 4 + 2 + 1
    assert recipes.count("swa-base") == 1
    assert sum(recipe.startswith("fgg-grid-") for recipe in recipes) == 2


HPO = {"recipes": ["base"], "combinations": ["IDRID"], "n_trials": 2}


def test_pool_inputs_name_checkpoints_snapshot_folders_and_the_hpo_list():
    config = make_config(checkpoint="best")
    with pytest.raises(ValueError, match="pool 'hpo' for IDRID: no Optuna study"):
        pool_inputs(config, "IDRID", ["hpo"])
    config["hpo"] = HPO
    inputs = pool_inputs(config, "IDRID", ["grid", "fgg", "hpo", "base"])
    assert inputs[0] == "results/models/IDRID/grid-auglight-lr1e-3/seed0/best.safetensors"
    assert "results/models/IDRID/fgg-grid-auglight-lr1e-3/seed0/snapshots" in inputs
    assert "results/hpo/IDRID/base/ingredients.json" in inputs  # the export's: a study a recipe
    assert inputs[-2:] == [
        "results/models/IDRID/base/seed0/best.safetensors",
        "results/models/IDRID/base/seed1/best.safetensors",
    ]
    with pytest.raises(ValueError, match="unknown ingredient pool 'nope'"):
        pool_inputs(config, "IDRID", ["nope"])


def test_fgg_pool_holds_the_snapshots_and_the_model_they_started_from():
    """FissionFusion's six models per learning rate: the base and its snapshots."""
    inputs = pool_inputs(make_config(), "IDRID", ["fgg"])
    run = "results/models/IDRID/fgg-grid-auglight-lr1e-3/seed0"
    assert inputs[:2] == [
        f"{run}/snapshots",
        "results/models/IDRID/grid-auglight-lr1e-3/seed0/best.safetensors",
    ]
    assert len(inputs) == 4


def _planned_outputs(config: dict) -> set[str]:
    """What the plan's jobs write: each run's declared outputs (rule train), the shared
    initialisations and each study's export (rule hpo_export)."""
    outputs = set(hpo.export_outputs(config))
    for run in [*study.runs(config), *ingredient_runs(config)]:
        outputs.add(paths.init(run.combo))
        for output in ("best.safetensors", "last.safetensors", "snapshots", "optimizer"):
            outputs.add(f"{run.directory}/{output}")
    for combo in merging_combinations(config):  # rule merge: soups and the SWA models
        outputs.update(paths.merged(combo, method) for method in soup_methods(config, combo))
    return outputs


def test_every_soup_and_continuation_input_is_a_planned_output():
    """Dry-run level: a soup of every pool (hpo included) and every ingredient run asks only
    for files some planned job writes, so Snakemake can plan them."""
    config = make_config(combinations=["IDRID"])
    config["hpo"] = HPO
    config["merging"]["soups"]["everything"] = {
        "rule": "greedy",
        "ingredients": ["grid", "fgg", "swa", "hpo", "base"],
    }
    planned = _planned_outputs(config)
    for method in soup_methods(config, "IDRID"):
        assert set(soup_inputs(config, "IDRID", method)) <= planned, method
    # grid 4, fgg 2 x (snapshots, base), the one SWA model (seed 0), the HPO list, base's seeds
    assert len(soup_inputs(config, "IDRID", "everything")) == 4 + 2 * 2 + 1 + 1 + 2
    assert paths.merged("IDRID", "swa-seed0") in soup_inputs(config, "IDRID", "everything")
    for run in ingredient_runs(config):
        needed = init_for(config, run.combo, run.recipe, run.seed)
        needed += optimizer_input(run.combo, run.recipe, run.seed)
        assert set(needed) <= planned, run


def test_soup_defaults_depend_on_the_rule():
    config = make_config(bn_recompute={"patches": 16})
    assert soup_settings(config, "swa") == {
        "rule": "swa",
        "ingredients": ["swa"],
        "bn_policy": "recompute",
        "group_by": "lr",
        "part": "full",
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
    fgg = {**make_config()["merging"]["fgg"], "bases": "every", "base_point": {"augmentation": "x"}}
    jsonschema.validate({"fgg": fgg}, schema)
    with pytest.raises(jsonschema.ValidationError, match="'some' is not one of"):
        jsonschema.validate({"fgg": {**fgg, "bases": "some"}}, schema)
    assert schema["properties"]["fgg"]["properties"]["bases"]["enum"] == list(FGG_BASES)
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
    assert (tuple(soup["part"]["enum"]), soup["part"]["default"]) == (PARTS, DEFAULT_PART)
    sample = schema["properties"]["bn_recompute"]["properties"]
    assert {key: value["default"] for key, value in sample.items()} == dataclasses.asdict(
        BatchNormSample()
    )


def test_swa_makes_one_model_per_run_never_a_mixture_of_seeds():
    """Seeds 0, 1, 2: three SWA models, each merging only its own run's snapshots; a soup of
    the SWA models (pool swa under another rule) averages those three models."""
    config = make_config()
    config["merging"]["swa"]["seeds"] = [0, 1, 2]
    config["merging"]["soups"]["uniform-swa"] = {"rule": "uniform", "ingredients": ["swa"]}
    methods = soup_methods(config, "IDRID")
    assert [m for m in methods if m.startswith("swa")] == ["swa-seed0", "swa-seed1", "swa-seed2"]
    for seed in (0, 1, 2):
        assert soup_inputs(config, "IDRID", f"swa-seed{seed}") == [
            f"results/models/IDRID/swa-base/seed{seed}/snapshots"
        ]
        assert soup_arguments(config, f"swa-seed{seed}") == soup_arguments(config, "swa")
    assert soup_inputs(config, "IDRID", "uniform-swa") == [
        f"results/merged/IDRID/swa-seed{seed}.safetensors" for seed in (0, 1, 2)
    ]
    assert {(path, method) for path, _, method in merged_models(config)} >= {
        (f"results/merged/IDRID/swa-seed{seed}.safetensors", "swa") for seed in (0, 1, 2)
    }
    with pytest.raises(ValueError, match="unknown soup 'swa-seed9x'"):
        soup_inputs(config, "IDRID", "swa-seed9x")
    with pytest.raises(ValueError, match="named swa-seed<N>"):
        soup_inputs(config, "IDRID", "swa")
    del config["merging"]["soups"]["swa"]
    with pytest.raises(ValueError, match="exactly one soup with rule 'swa'"):
        soup_inputs(config, "IDRID", "uniform-swa")


def test_a_rising_schedule_is_refused_naming_the_key():
    """A cosine or triangular schedule whose floor is not below its peak would stay flat or
    climb: refused at planning, wherever it is configured (the check is min_lr >= lr)."""
    config = make_config()
    config["training"]["defaults"]["min_lr"] = 0.002  # = the base recipe's lr
    with pytest.raises(ValueError, match=r"training\.recipes\.base: min_lr 0\.002 >= lr 0\.002"):
        settings_for(config, "base", 0)
    config = make_config()
    config["training"]["defaults"]["min_lr"] = 0.001  # the grid point lr 1e-3 is flat
    with pytest.raises(
        ValueError, match=r"merging\.grid\.values \(grid point grid-auglight-lr1e-3\)"
    ):
        settings_for(config, "grid-auglight-lr1e-3", 0)
    assert settings_for(config, "grid-auglight-lr25e-4", 0)["lr"] == 0.0025  # falls: allowed
    config = make_config()
    config["merging"]["fgg"]["settings"]["min_lr"] = 1e-5  # FGG's floor = its peak
    with pytest.raises(ValueError, match=r"merging\.fgg\.settings: min_lr 1e-05 >= lr 1e-05"):
        settings_for(config, "fgg-grid-auglight-lr1e-3", 0)
    assert settings_for(make_config(), "swa-base", 0)["schedule"] == "swa"  # SWA may rise


def test_recipes_cross_starts_seeds_and_combinations_in_one_study():
    config = make_config(
        soups={
            "stock-shared": {"rule": "model_stock", "ingredients": ["shared"]},
            "uniform-independent": {"rule": "uniform", "ingredients": ["independent"]},
            "swa-independent": {"rule": "swa", "ingredients": ["swa-independent"]},
        },
        swa={
            "base": ["shared", "independent"],
            "seeds": [0, 1, 2],
            "settings": {"steps": 12, "lr": 5e-4, "start_lr": 2e-3, "cycle_steps": 4},
        },
    )
    config["training"]["combinations"] = ["IDRID", "DDR"]
    config["training"]["recipes"] = {
        "base": {"steps": 30, "lr": 0.002},
        "shared": {"steps": 30, "lr": 0.002, "seeds": [0, 1, 2], "combinations": ["IDRID"]},
        "independent": {
            "steps": 30, "lr": 0.002, "init": "independent", "seeds": [0, 1, 2],
            "combinations": ["IDRID"],
        },
    }  # fmt: skip
    planned = {(r.combo, r.recipe, r.seed) for r in runs(config)}
    assert planned == {
        *((combo, "base", seed) for combo in ("IDRID", "DDR") for seed in (0, 1)),
        *(("IDRID", recipe, seed) for recipe in ("shared", "independent") for seed in (0, 1, 2)),
    }
    # the plan keys never reach the run's settings
    assert "seeds" not in settings_for(config, "independent", 1)
    assert init_for(config, "IDRID", "shared", 2) == [paths.init("IDRID")]
    assert init_for(config, "IDRID", "independent", 2) == []
    assert init_for(config, "IDRID", "swa-independent", 1) == [
        f"{paths.run('IDRID', 'independent', 1)}/last.safetensors"
    ]
    assert soup_start(config, "IDRID", "stock-shared") == [paths.init("IDRID")]
    assert len(pool_inputs(config, "IDRID", ["independent"])) == 3
    assert pool_inputs(config, "DDR", ["independent"]) == []
    assert one_run_methods(config, "IDRID", "swa-independent") == [
        f"swa-independent-seed{seed}" for seed in (0, 1, 2)
    ]
    config["merging"]["soups"]["stock-independent"] = {
        "rule": "ties", "ingredients": ["independent", "shared"],
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"stock-independent: the ties rule .*'independent'"):
        soup_settings(config, "stock-independent")
    config["training"]["recipes"]["shared"]["combinations"] = ["DDR+IDRID"]
    with pytest.raises(ValueError, match=r"recipes.shared.combinations: \['DDR\+IDRID'\] are not"):
        runs(config)
    config["training"]["recipes"]["shared"]["combinations"] = ["RETLES"]
    with pytest.raises(ValueError, match="recipes.shared.combinations: combination 'RETLES'"):
        runs(config)


def test_the_workflow_feeds_the_pretrained_start_to_an_encoder_soup_of_independent_runs(
    tmp_path: Path,
) -> None:
    """A dry run of a Model Stock encoder soup of independent runs: the pretrained_start job
    (local), after the fetch, makes the anchor the merge job reads and passes as --anchor."""
    config = load_tiny_config()
    config["model"]["encoder_weights"] = "imagenet"
    config["training"]["init"] = "independent"
    config["merging"]["soups"]["stock-encoder"] = {"rule": "model_stock", "part": "encoder"}
    configfile = write_config(tmp_path / "independent.yaml", config)
    target = paths.merged("IDRID", "stock-encoder")
    result = snakemake(tmp_path / "run", configfile, "--dry-run", "--printshellcmds", target)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    start = paths.pretrained_start(config["model"])
    assert start == "results/models/pretrained-resnet18.imagenet.safetensors"
    jobs = result.stdout.split("\n\n")
    [job] = [job for job in jobs if "rule pretrained_start:" in job]
    assert f"output: {start}" in job and f"input: {paths.pretrained_record(config['model'])}" in job
    assert f"--record {paths.pretrained_record(config['model'])}" in job
    [merge_job] = [job for job in jobs if "rule merge:" in job]
    assert start in merge_job.split("input:")[1].split("output:")[0]
    assert f"--anchor {start} " in merge_job and "--part encoder" in merge_job
    assert "rule warmup:" not in result.stdout  # independent runs: no shared initialisation
