"""What the ``merging`` config asks for: ingredient runs, their settings, and the merged targets.

Ingredient runs are ordinary training runs (the ``train`` rule) whose recipe
name the config generates:

- ``grid-<key><value>-...``: one run per point of a hyperparameter grid over a
  named recipe, model-soups style (``grid-augmedium-lr1e-3``; keys sorted,
  numbers written without a dot: ``0.0025`` is ``25e-4``);
- ``swa-<base>``: continues the base run of the same seed (a named or grid
  recipe) with the ``swa`` schedule, snapshotting at each cycle end;
- ``fgg-<grid recipe>``: fast geometric generation from every grid run, with
  the ``triangular`` schedule, snapshotting at every learning-rate minimum.

A continuation keeps its base's data, loss and optimiser settings but takes
its whole schedule (steps, learning rates, cycles) from its own settings. It
starts a fresh AdamW from the base's weights: FissionFusion keeps the
optimiser state, which ``train_run`` does not carry over.

Soups and ensembles draw their ingredients from pools: ``grid``, ``fgg``,
``swa``, ``hpo`` (the Optuna study's completed trials), or the name of a
recipe (its runs over the seeds). This module imports no torch, so that
planning the workflow stays fast.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from lesionsoup.core.combos import expand_combinations
from lesionsoup.core.specs import TrainSettings
from lesionsoup.plan import paths
from lesionsoup.plan.merge_rules import (
    DEFAULT_GROUP_BY,
    ENSEMBLE,
    ENSEMBLE_POOLS,
    BatchNormSample,
    merge_rule,
)
from lesionsoup.plan.study import Run, combinations, recipe_settings

GRID_PREFIX = "grid-"
SWA_PREFIX = "swa-"
FGG_PREFIX = "fgg-"
POOLS = ("grid", "fgg", "swa", "hpo")
#: Settings that make up a learning-rate schedule; a continuation never inherits them.
SCHEDULE_FIELDS = (
    *("steps", "lr", "schedule", "warmup_steps", "min_lr", "start_lr", "cycle_steps", "cyclic"),
)
#: Short names of settings in grid recipe names; other settings keep their name.
ABBREVIATIONS = {
    "augmentation": "aug",
    "batch_size": "bs",
    "weight_decay": "wd",
    "lesion_fraction": "lf",
    "dice_weight": "dice",
    "bce_weight": "bce",
    "warmup_steps": "warmup",
    "patch_size": "ps",
}
_NAME = re.compile(r"[A-Za-z0-9_]+")


def value_token(value: Any) -> str:
    """A value as it appears in a recipe name: letters, digits, ``_`` and ``-`` only."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
        mantissa = ("-" if sign else "") + "".join(map(str, digits))
        if not isinstance(exponent, int):
            raise ValueError(f"grid value {value!r} is not a finite number")
        return mantissa + "0" * exponent if exponent >= 0 else f"{mantissa}e{exponent}"
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    raise ValueError(
        f"grid value {value!r} cannot name a recipe: use numbers, booleans or names made of "
        "letters, digits and _"
    )


def _merging(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config.get("merging") or {}


def _grid_points(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Grid recipe name -> the settings that point changes."""
    grid = _merging(config).get("grid")
    if not grid:
        return {}
    values = grid["values"]
    keys = sorted(values)
    points: dict[str, dict[str, Any]] = {}
    for combination in itertools.product(*(values[key] for key in keys)):
        point = dict(zip(keys, combination, strict=True))
        name = GRID_PREFIX + "-".join(
            f"{ABBREVIATIONS.get(key, key)}{value_token(value)}" for key, value in point.items()
        )
        if name in points:
            raise ValueError(f"merging.grid: two grid points are both named {name!r}")
        points[name] = point
    return points


def grid_recipes(config: Mapping[str, Any]) -> list[str]:
    return list(_grid_points(config))


def _base_settings(config: Mapping[str, Any], recipe: str, seed: int) -> dict[str, Any]:
    """Settings of a named or grid recipe (no continuation)."""
    if recipe in config["training"]["recipes"]:
        return recipe_settings(config, recipe, seed)
    points = _grid_points(config)
    if recipe in points:
        grid = _merging(config)["grid"]
        settings = {**recipe_settings(config, grid["recipe"], seed), **points[recipe]}
        return TrainSettings.from_dict(settings).as_dict()
    raise ValueError(
        f"unknown recipe {recipe!r}; configured: {sorted(config['training']['recipes'])}, "
        f"grid: {sorted(points)}"
    )


def _continuation(recipe: str) -> tuple[str, str] | None:
    """(``swa`` or ``fgg``, base recipe) of a continuation's name; None for another recipe."""
    for stage, prefix in (("swa", SWA_PREFIX), ("fgg", FGG_PREFIX)):
        if recipe.startswith(prefix):
            return stage, recipe.removeprefix(prefix)
    return None


_SCHEDULES = {"swa": "swa", "fgg": "triangular"}


def _check_recipe_names(config: Mapping[str, Any]) -> None:
    """Named recipes may not look like generated ones, or a name would mean two runs."""
    for recipe in config["training"]["recipes"]:
        if recipe.startswith((GRID_PREFIX, SWA_PREFIX, FGG_PREFIX)):
            raise ValueError(
                f"training.recipes.{recipe}: names starting with {GRID_PREFIX!r}, "
                f"{SWA_PREFIX!r} or {FGG_PREFIX!r} are kept for generated ingredient runs"
            )


def settings_for(config: Mapping[str, Any], recipe: str, seed: int) -> dict[str, Any]:
    """The training settings of any run the ``train`` rule makes: named, grid, SWA or FGG."""
    _check_recipe_names(config)
    continued = None if recipe in config["training"]["recipes"] else _continuation(recipe)
    if continued is None:
        return _base_settings(config, recipe, seed)
    stage, base = continued
    section = _merging(config).get(stage)
    if not section:
        raise ValueError(f"recipe {recipe!r} needs a merging.{stage} section in the config")
    inherited = {
        key: value
        for key, value in _base_settings(config, base, seed).items()
        if key not in SCHEDULE_FIELDS
    }
    settings = {
        **inherited,
        **section["settings"],
        "schedule": _SCHEDULES[stage],
        "early_stopping": 0,
        "seed": seed,
    }
    return TrainSettings.from_dict(settings).as_dict()


def init_for(combo: str, recipe: str, seed: int) -> str:
    """The checkpoint a run starts from: its base run's last one, or the shared initialisation."""
    continued = _continuation(recipe)
    if continued is None:
        return paths.init(combo)
    return f"{paths.run(combo, continued[1], seed)}/last.safetensors"


def merging_combinations(config: Mapping[str, Any]) -> list[str]:
    """The combinations that get ingredients, soups and ensembles (default: every trained one)."""
    chosen = _merging(config).get("combinations")
    if chosen is None:
        return combinations(config)
    return expand_combinations(chosen, sorted(config["datasets"]))


def _runs(combo: str, recipes: list[str], seeds: list[int]) -> list[Run]:
    return [Run(combo, recipe, seed) for recipe in recipes for seed in seeds]


def pool_runs(config: Mapping[str, Any], combo: str, pool: str) -> list[Run]:
    """The training runs of a pool (every pool but ``hpo``); none when its section is absent."""
    merging = _merging(config)
    grid_seeds = merging.get("grid", {}).get("seeds", [0])
    if pool == "grid":
        return _runs(combo, grid_recipes(config), grid_seeds)
    if pool == "fgg":
        bases = pool_runs(config, combo, "grid") if "fgg" in merging else []
        return [Run(combo, FGG_PREFIX + base.recipe, base.seed) for base in bases]
    if pool == "swa":
        swa = merging.get("swa")
        return _runs(combo, [SWA_PREFIX + swa["base"]], swa.get("seeds", [0])) if swa else []
    if pool in config["training"]["recipes"]:
        return _runs(combo, [pool], config["training"]["seeds"])
    if pool in grid_recipes(config):
        return _runs(combo, [pool], grid_seeds)
    raise ValueError(
        f"unknown ingredient pool {pool!r}; known: {list(POOLS)}, the recipes "
        f"{sorted(config['training']['recipes'])} and the grid recipes {grid_recipes(config)}"
    )


def ingredient_runs(config: Mapping[str, Any]) -> list[Run]:
    """Every run the merging config adds to the training stage (grid, FGG, SWA)."""
    _check_recipe_names(config)
    return [
        run
        for combo in merging_combinations(config)
        for pool in ("grid", "fgg", "swa")
        for run in pool_runs(config, combo, pool)
    ]


def pool_inputs(config: Mapping[str, Any], combo: str, pools: list[str]) -> list[str]:
    """The files (checkpoints, snapshot folders, ingredient lists) that hold the pools' models."""
    checkpoint = _merging(config).get("checkpoint", "last")
    inputs: list[str] = []
    for pool in pools:
        if pool == "hpo":
            inputs.append(f"results/hpo/{combo}/ingredients.json")
        elif pool in ("fgg", "swa"):
            inputs += [f"{run.directory}/snapshots" for run in pool_runs(config, combo, pool)]
        else:
            runs = pool_runs(config, combo, pool)
            inputs += [f"{run.directory}/{checkpoint}.safetensors" for run in runs]
    return list(dict.fromkeys(inputs))


def soup_settings(config: Mapping[str, Any], method: str) -> dict[str, Any]:
    """A configured soup with its rule's defaults filled in: rule (default: the soup's name),
    pools, BatchNorm policy, group key and the recompute patches."""
    soups = _merging(config).get("soups", {})
    if method not in soups:
        raise ValueError(f"unknown soup {method!r}; configured: {sorted(soups)}")
    soup = dict(soups[method] or {})
    rule = merge_rule(soup.get("rule", method))
    bn_policy = soup.get("bn_policy", rule.bn_policy)
    return {
        "rule": rule.name,
        "ingredients": soup.get("ingredients", list(rule.pools)),
        "bn_policy": bn_policy,
        "group_by": soup.get("group_by", DEFAULT_GROUP_BY),
        # only soups that recompute BatchNorm statistics depend on the patches they use
        "bn_recompute": bn_sample(config) if bn_policy == "recompute" else None,
    }


def bn_sample(config: Mapping[str, Any]) -> dict[str, Any]:
    """``merging.bn_recompute`` over the defaults of ``BatchNormSample``: the patches every
    BatchNorm recompute of the study uses (soups and the connectivity analysis)."""
    return dataclasses.asdict(BatchNormSample(**_merging(config).get("bn_recompute", {})))


def bn_sample_arguments(sample: Mapping[str, Any]) -> str:
    """The ``--bn-*`` options of ``lesionsoup merge`` and ``lesionsoup connectivity``."""
    return (
        f"--bn-patches {sample['patches']} --bn-batch-size {sample['batch_size']} "
        f"--bn-seed {sample['seed']}"
    )


def soup_inputs(config: Mapping[str, Any], combo: str, method: str) -> list[str]:
    return pool_inputs(config, combo, soup_settings(config, method)["ingredients"])


def soup_arguments(config: Mapping[str, Any], method: str) -> str:
    """The ``lesionsoup merge`` options of a configured soup."""
    soup = soup_settings(config, method)
    options = [f"--rule {soup['rule']}", f"--bn-policy {soup['bn_policy']}"]
    options.append(f"--group-by {soup['group_by']}")
    if soup["bn_recompute"]:
        options.append(bn_sample_arguments(soup["bn_recompute"]))
    return " ".join(options)


def ensemble_settings(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A configured ensemble with its defaults filled in: pools and top k (None: all)."""
    ensembles = _merging(config).get("ensembles", {})
    if name not in ensembles:
        raise ValueError(f"unknown ensemble {name!r}; configured: {sorted(ensembles)}")
    ensemble = dict(ensembles[name] or {})
    return {
        "ingredients": ensemble.get("ingredients", list(ENSEMBLE_POOLS)),
        "top": ensemble.get("top"),
    }


def ensemble_inputs(config: Mapping[str, Any], combo: str, name: str) -> list[str]:
    return pool_inputs(config, combo, ensemble_settings(config, name)["ingredients"])


def ensemble_arguments(config: Mapping[str, Any], name: str) -> str:
    """The ``lesionsoup ensemble`` options of a configured ensemble."""
    top = ensemble_settings(config, name)["top"]
    return "" if top is None else f"--top {top}"


def merged_models(config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(path, combination, method) of every merged model and ensemble, for evaluation."""
    merging = _merging(config)
    models = []
    for combo in merging_combinations(config):
        for soup in merging.get("soups", {}):
            rule = soup_settings(config, soup)["rule"]
            models.append((paths.merged(combo, soup), combo, rule))
        for name in merging.get("ensembles", {}):
            models.append((paths.ensemble(combo, name), combo, ENSEMBLE))
    return models
