"""What the ``merging`` config asks for: ingredient runs, their settings, and the merged targets.

Ingredient runs are ordinary training runs (the ``train`` rule) whose recipe
name the config generates:

- ``grid-<key><value>-...``: one run per point of a hyperparameter grid over a
  named recipe, model-soups style (``grid-augmedium-lr1e-3``; keys sorted,
  numbers written without a dot: ``0.0025`` is ``25e-4``);
- ``swa-<base>``: continues the base run of the same seed (a named or grid
  recipe) with the ``swa`` schedule, snapshotting at each cycle end;
- ``fgg-<grid recipe>``: fast geometric generation (FissionFusion's
  ``fgg.py``) from the base's ``best`` checkpoint and the AdamW state saved
  with it, with the ``triangular`` schedule, snapshotting before every
  learning-rate minimum. By default one base per learning rate
  (``merging.fgg.bases: per_lr``, see ``fgg_bases``), or every grid run.

A continuation keeps its base's data, loss and optimiser settings but takes
its whole schedule (steps, learning rates, cycles) from its own settings. An
SWA run starts a fresh AdamW from its base's ``last`` weights; an FGG run
carries its base's AdamW moments over, as FissionFusion does, so each FGG
base run publishes its optimiser state (``train_arguments``).

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

from lesionsoup.core import paths
from lesionsoup.core.merge_rules import (
    DEFAULT_GROUP_BY,
    DEFAULT_KEEP,
    DEFAULT_PART,
    ENSEMBLE_POOLS,
    POOLS,
    RUN_POOLS,
    BatchNormSample,
    check_part,
    merge_rule,
)
from lesionsoup.core.methods import ENSEMBLE, method_name
from lesionsoup.plan import hpo
from lesionsoup.plan.options import (
    BN_SAMPLE_OPTIONS,
    ENSEMBLE_OPTIONS,
    MERGE_OPTIONS,
    TRAIN_OPTIMIZER_OPTIONS,
    option_flags,
)
from lesionsoup.plan.study import (
    Run,
    checked_settings,
    combinations,
    dataset_combinations,
    recipe_seeds,
    recipe_settings,
    recipe_start,
    scoped_out,
    study_start,
)

GRID_PREFIX = "grid-"
SWA_PREFIX = "swa-"
FGG_PREFIX = "fgg-"
#: Which grid runs FGG continues: one per learning rate (FissionFusion), or every one.
FGG_BASES = ("per_lr", "every")
#: Settings that make up a learning-rate schedule; a continuation never inherits them.
SCHEDULE_FIELDS = (
    *("steps", "epochs", "lr", "schedule", "warmup_steps", "min_lr", "start_lr", "cycle_steps"),
    *("cycle_epochs", "cyclic"),
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
        return checked_settings(settings, f"merging.grid.values (grid point {recipe})")
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
    # FGG: FissionFusion's fgg.py trains on its bases' data with their (Heavy) augmentation,
    # loss and weight decay, as inheriting them here does; its LR1/LR2 are fixed (1e-5, 1e-8)
    # for every base, here merging.fgg.settings. Its runs have no gradient clipping or
    # validation-driven stop; a continuation here keeps its base's grad_clip and never stops early.
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
    return checked_settings(settings, f"merging.{stage}.settings")


#: The checkpoint of its base a continuation starts from: SWA continues where the base ended,
#: FGG from the base's best checkpoint (FissionFusion loads ``best_checkpoint.pth``).
_START = {"swa": "last", "fgg": "best"}


def continued_from(combo: str, recipe: str, seed: int) -> str | None:
    """The checkpoint of its base run a continuation starts from; None for another run."""
    continued = _continuation(recipe)
    if continued is None:
        return None
    stage, base = continued
    return f"{paths.run(combo, base, seed)}/{_START[stage]}.safetensors"


def run_start(config: Mapping[str, Any], recipe: str) -> str:
    """How the runs of any recipe start (``training.init`` or the recipe's ``init``): a grid
    point as its grid's recipe, a continuation as its base."""
    if recipe in grid_recipes(config):
        return recipe_start(config, _merging(config)["grid"]["recipe"])
    continued = None if recipe in config["training"]["recipes"] else _continuation(recipe)
    if continued is not None:
        return run_start(config, continued[1])
    return recipe_start(config, recipe)


def init_for(config: Mapping[str, Any], combo: str, recipe: str, seed: int) -> list[str]:
    """The checkpoint a run starts from: a checkpoint of its base run, the shared
    initialisation, or none (an independent start)."""
    start = continued_from(combo, recipe, seed)
    if start is not None:
        return [start]
    return [paths.init(combo)] if run_start(config, recipe) == "shared" else []


def optimizer_input(combo: str, recipe: str, seed: int) -> list[str]:
    """The optimiser-state folder a continuation starts from (its base's); none for other runs."""
    continued = _continuation(recipe)
    if continued is None:
        return []
    return [paths.RUN_OPTIMIZER.format(combo=combo, recipe=continued[1], seed=seed)]


def _swa_base_recipes(config: Mapping[str, Any]) -> list[str]:
    """``merging.swa.base``: one recipe or a list of them (none without the section)."""
    swa = _merging(config).get("swa")
    if not swa:
        return []
    return [swa["base"]] if isinstance(swa["base"], str) else list(swa["base"])


def swa_bases(config: Mapping[str, Any], combo: str) -> list[Run]:
    """The runs SWA continues: each ``merging.swa.base`` over its seeds, on the combinations
    the base trains on."""
    seeds = _merging(config).get("swa", {}).get("seeds", [0])
    named = config["training"]["recipes"]
    bases = [
        base
        for base in _swa_base_recipes(config)
        if base not in named or not scoped_out(config, base, combo)
    ]
    return _runs(combo, bases, seeds)


def train_arguments(config: Mapping[str, Any], combo: str, recipe: str, seed: int) -> str:
    """The ``lesionsoup train`` options of a run's optimiser state: a continuation loads its
    base's (FGG: saved with ``best``, as FissionFusion's fgg.py; SWA: with ``last``, torch's
    SWALR continuing the base's optimiser), and a base keeps the state its continuations need
    (only those runs: the state is twice the size of the weights)."""
    return option_flags(TRAIN_OPTIMIZER_OPTIONS, optimizer_settings(config, combo, recipe, seed))


def optimizer_settings(config: Mapping[str, Any], combo: str, recipe: str, seed: int) -> dict:
    """A run's ``init_optimizer`` (a continuation's: its base's published state) or its
    ``keep_optimizer`` checkpoints (those whose state its continuations start from)."""
    continued = _continuation(recipe)
    if continued is not None:
        folder = optimizer_input(combo, recipe, seed)[0]
        return {"init_optimizer": f"{folder}/{paths.optimizer_file(_START[continued[0]])}"}
    if combo not in merging_combinations(config):
        return {}
    run = Run(combo, recipe, seed)
    kept = [
        _START[stage]
        for stage, bases in (("fgg", fgg_bases), ("swa", swa_bases))
        if run in bases(config, combo)
    ]
    return {"keep_optimizer": kept}


def merging_combinations(config: Mapping[str, Any]) -> list[str]:
    """The combinations that get ingredients, soups and ensembles (default: every trained one)."""
    chosen = _merging(config).get("combinations")
    if chosen is None:
        return combinations(config)
    return dataset_combinations(config, chosen)


def _runs(combo: str, recipes: list[str], seeds: list[int]) -> list[Run]:
    return [Run(combo, recipe, seed) for recipe in recipes for seed in seeds]


def _per_lr_bases(config: Mapping[str, Any]) -> list[str]:
    """The grid recipe of each learning rate that FGG continues: the grid point whose other
    settings take ``merging.fgg.base_point``'s values (default: each one's first listed value).
    """
    merging = _merging(config)
    values = merging["grid"]["values"]
    chosen = {key: listed[0] for key, listed in values.items() if key != "lr"}
    for key, value in (merging["fgg"].get("base_point") or {}).items():
        if key == "lr" or value not in values.get(key, []):
            raise ValueError(
                f"merging.fgg.base_point: {key}={value!r} is not a grid value of a setting "
                f"other than lr; the grid has {dict(values)}"
            )
        chosen[key] = value
    return [
        name
        for name, point in _grid_points(config).items()
        if all(point[key] == value for key, value in chosen.items())
    ]


def fgg_bases(config: Mapping[str, Any], combo: str) -> list[Run]:
    """The grid runs FGG continues (none without a ``merging.fgg`` section).

    ``bases: per_lr`` (the default) continues one run per learning rate of the
    grid, as FissionFusion: its ``fgg.py`` groups the Heavy-augmentation runs by
    ``LEARNING_RATE`` and continues ``random.sample(group, 1)``, and its
    protocol trains one such run per rate (seed 1, Heavy augmentation), so the
    sample is that run. Here the base is named by the config instead of drawn
    (``base_point``, and the grid's first seed), so the plan is fixed before
    anything trains. ``bases: every`` continues every grid run and seed.
    """
    merging = _merging(config)
    if "fgg" not in merging:
        return []
    bases = merging["fgg"].get("bases", "per_lr")
    if bases not in FGG_BASES:
        raise ValueError(f"merging.fgg.bases: {bases!r} is not one of {list(FGG_BASES)}")
    if bases == "every" or not merging.get("grid"):
        return pool_runs(config, combo, "grid")
    return _runs(combo, _per_lr_bases(config), merging["grid"].get("seeds", [0])[:1])


def pool_runs(config: Mapping[str, Any], combo: str, pool: str) -> list[Run]:
    """The training runs of a pool (every pool but ``hpo``); none when its section is absent."""
    merging = _merging(config)
    grid_seeds = merging.get("grid", {}).get("seeds", [0])
    if pool == "grid":
        return _runs(combo, grid_recipes(config), grid_seeds)
    if pool == "fgg":
        return [
            Run(combo, FGG_PREFIX + base.recipe, base.seed) for base in fgg_bases(config, combo)
        ]
    if pool == "swa":
        return [Run(combo, SWA_PREFIX + run.recipe, run.seed) for run in swa_bases(config, combo)]
    if pool in config["training"]["recipes"]:
        if scoped_out(config, pool, combo):
            return []
        return _runs(combo, [pool], recipe_seeds(config, pool))
    if pool in grid_recipes(config):
        return _runs(combo, [pool], grid_seeds)
    continuations = [run for run in ingredient_runs(config) if run.recipe == pool]
    if continuations:
        return [run for run in continuations if run.combo == combo]
    raise ValueError(
        f"unknown ingredient pool {pool!r}; known: {list(POOLS)}, the recipes "
        f"{sorted(config['training']['recipes'])}, the grid recipes {grid_recipes(config)} "
        "and the SWA and FGG runs"
    )


def pool_starts(config: Mapping[str, Any], pool: str) -> set[str]:
    """How the runs of a pool start (``run_start``); the ``hpo`` pool's trials start as their
    tuned recipes, the ``swa`` and ``fgg`` pools as their bases."""
    if pool == "hpo":
        return {recipe_start(config, plan.recipe) for plan in hpo.plans(config)}
    if pool == "swa":
        return {run_start(config, recipe) for recipe in _swa_base_recipes(config)}
    if pool == "fgg":
        return pool_starts(config, "grid")
    if pool == "grid":
        grid = _merging(config).get("grid")
        return {recipe_start(config, grid["recipe"])} if grid else {study_start(config)}
    return {run_start(config, pool)}


def ingredient_runs(config: Mapping[str, Any]) -> list[Run]:
    """Every run the merging config adds to the training stage (grid, FGG, SWA)."""
    _check_recipe_names(config)
    return [
        run
        for combo in merging_combinations(config)
        for pool in RUN_POOLS
        for run in pool_runs(config, combo, pool)
    ]


def _hpo_lists(config: Mapping[str, Any], combo: str) -> list[str]:
    """The ``ingredients.json`` of every Optuna study of a combination (one per tuned recipe)."""
    lists = [
        paths.HPO_INGREDIENTS.format(combo=combo, recipe=plan.recipe)
        for plan in hpo.plans(config)
        if plan.combo == combo
    ]
    if not lists:
        raise ValueError(
            f"ingredient pool 'hpo' for {combo}: no Optuna study tunes it "
            "(see hpo.recipes and hpo.combinations)"
        )
    return lists


def _fgg_models(run: Run) -> list[str]:
    """An FGG run's models: its snapshots and the ``best`` checkpoint it started from
    (FissionFusion's six models per learning rate: the base and five snapshots)."""
    return [f"{run.directory}/snapshots", str(continued_from(run.combo, run.recipe, run.seed))]


def _swa_models(config: Mapping[str, Any], combo: str) -> list[str]:
    """The pool ``swa`` of a soup or ensemble that is not itself SWA: the study's SWA models,
    one per SWA run (those of its soup whose rule is ``swa``)."""
    soups = _merging(config).get("soups", {})
    makers = [name for name in soups if merge_rule(soup_settings(config, name)["rule"]).one_run]
    if len(makers) != 1:
        raise ValueError(
            "merging.soups: the pool 'swa' of a soup or ensemble means the SWA models, one per "
            f"SWA run, which exactly one soup with rule 'swa' makes; found {makers or 'none'}"
        )
    return [paths.merged(combo, method) for method in one_run_methods(config, combo, makers[0])]


def pool_inputs(config: Mapping[str, Any], combo: str, pools: list[str]) -> list[str]:
    """The files (checkpoints, snapshot folders, ingredient lists) that hold the pools' models."""
    checkpoint = _merging(config).get("checkpoint", "last")
    inputs: list[str] = []
    for pool in pools:
        if pool == "hpo":
            inputs += _hpo_lists(config, combo)
        elif pool == "fgg":
            inputs += [path for run in pool_runs(config, combo, pool) for path in _fgg_models(run)]
        elif pool == "swa":
            inputs += _swa_models(config, combo)
        else:
            runs = pool_runs(config, combo, pool)
            inputs += [f"{run.directory}/{checkpoint}.safetensors" for run in runs]
    return list(dict.fromkeys(inputs))


#: A soup whose rule merges one run's snapshots (SWA) makes one model per run:
#: ``<soup>-seed<N>``, never one mixing the runs of several seeds.
_ONE_RUN_METHOD = re.compile(r"(?P<soup>.+)-seed(?P<seed>\d+)")


def _soup_of(config: Mapping[str, Any], method: str) -> tuple[str, int | None]:
    """The configured soup a merged model's method comes from, and its run's seed if it is
    one run's (``swa-seed1`` of the soup ``swa``)."""
    soups = _merging(config).get("soups", {})
    if method in soups:
        return method, None
    match = _ONE_RUN_METHOD.fullmatch(method)
    if match and match["soup"] in soups:
        return match["soup"], int(match["seed"])
    raise ValueError(f"unknown soup {method!r}; configured: {sorted(soups)}")


def one_run_methods(config: Mapping[str, Any], combo: str, soup: str) -> list[str]:
    """The models of a one-run soup (rule ``swa``): one per run of its pools, by seed."""
    runs = [
        run
        for pool in soup_settings(config, soup)["ingredients"]
        for run in pool_runs(config, combo, pool)
    ]
    seeds = [run.seed for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(
            f"merging.soups.{soup}: an SWA model is one run's, named by its seed, but its pools "
            f"hold several runs of one seed: {[f'{r.recipe}/seed{r.seed}' for r in runs]}"
        )
    return [f"{soup}-seed{seed}" for seed in seeds]


def soup_methods(config: Mapping[str, Any], combo: str) -> list[str]:
    """Every merged model of a combination: each soup, a one-run soup once per run."""
    methods = []
    for soup in _merging(config).get("soups", {}):
        if merge_rule(soup_settings(config, soup)["rule"]).one_run:
            methods += one_run_methods(config, combo, soup)
        else:
            methods.append(soup)
    return methods


#: The anchors of an anchored soup (``merging.anchored``): the combination's shared
#: initialisation, or the pretrained start (encoder soups of independent runs).
INIT_ANCHOR, PRETRAINED_ANCHOR = "init", "pretrained"


def soup_anchor(config: Mapping[str, Any], method: str, soup: Mapping[str, Any]) -> str | None:
    """The common start an anchored soup merges its ingredients' updates from: ``init`` when
    every run of its pools starts from the shared initialisation; ``pretrained`` for an
    encoder soup whose runs all start independently from the pretrained encoder
    (``model.encoder_weights``); None for a rule that is not anchored. Otherwise there is no
    common start, and the soup is refused, named."""
    rule = merge_rule(soup.get("rule", method))
    if not rule.anchored:
        return None
    pools = soup.get("ingredients", list(rule.pools))
    part = soup.get("part", DEFAULT_PART)
    starts = set().union(*(pool_starts(config, pool) for pool in pools))
    if starts == {"shared"}:
        return INIT_ANCHOR
    where = (
        f"merging.soups.{method}: the {rule.name} rule merges updates from the ingredients' "
        f"common start, and the runs of {pools} start {sorted(starts)}"
    )
    if starts != {"independent"}:
        raise ValueError(f"{where}: mixed starts share no start")
    if part != "encoder":
        raise ValueError(
            f"{where}, not all from the shared initialisation: only their encoders share a "
            f"start (the pretrained one), so a {part} soup of them has none (part: encoder)"
        )
    if config.get("model", {}).get("encoder_weights") is None:
        raise ValueError(
            f"{where}, and model.encoder_weights is null: each run drew its own encoder, so "
            "not even their encoders share a start"
        )
    return PRETRAINED_ANCHOR


def _check_soup(config: Mapping[str, Any], method: str, soup: Mapping[str, Any]) -> None:
    """Refuse what a soup's rule cannot do: average a part, merge updates from a common start
    the soup's runs do not share (``soup_anchor``), or take ``keep``."""
    rule = merge_rule(soup.get("rule", method))
    try:
        check_part(rule.name, soup.get("part", DEFAULT_PART))
    except ValueError as error:
        raise ValueError(f"merging.soups.{method}: {error}") from None
    soup_anchor(config, method, soup)
    if "keep" in soup and rule.name != "ties":
        raise ValueError(f"merging.soups.{method}: keep is the ties rule's, not {rule.name}'s")


def soup_settings(config: Mapping[str, Any], method: str) -> dict[str, Any]:
    """A configured soup (or one run's model of it) with its rule's defaults filled in: rule
    (default: the soup's name), pools, BatchNorm policy, group key, the part it averages, the
    recompute patches and, for ``ties``, the fraction it keeps; what the rule cannot do is
    refused (``_check_soup``)."""
    soups = _merging(config).get("soups", {})
    method, _ = _soup_of(config, method)
    soup = dict(soups[method] or {})
    rule = merge_rule(soup.get("rule", method))
    bn_policy = soup.get("bn_policy", rule.bn_policy)
    part = soup.get("part", DEFAULT_PART)
    _check_soup(config, method, soup)
    return {
        "rule": rule.name,
        "ingredients": soup.get("ingredients", list(rule.pools)),
        "bn_policy": bn_policy,
        "group_by": soup.get("group_by", DEFAULT_GROUP_BY),
        "part": part,
        # only soups that recompute BatchNorm statistics depend on the patches they use
        "bn_recompute": bn_sample(config) if bn_policy == "recompute" else None,
        **({"keep": soup.get("keep", DEFAULT_KEEP)} if rule.name == "ties" else {}),
    }


def bn_sample(config: Mapping[str, Any]) -> dict[str, Any]:
    """``merging.bn_recompute`` over the defaults of ``BatchNormSample``: the patches every
    BatchNorm recompute of the study uses (soups and the connectivity analysis)."""
    return dataclasses.asdict(BatchNormSample(**_merging(config).get("bn_recompute", {})))


def bn_sample_arguments(sample: Mapping[str, Any]) -> str:
    """The ``--bn-*`` options of ``lesionsoup merge`` and ``lesionsoup connectivity``."""
    return option_flags(BN_SAMPLE_OPTIONS, sample)


def soup_inputs(config: Mapping[str, Any], combo: str, method: str) -> list[str]:
    """A merged model's ingredients: its pools' models, or for one run's model (SWA) the
    snapshots of that run only."""
    soup, seed = _soup_of(config, method)
    settings = soup_settings(config, soup)
    if not merge_rule(settings["rule"]).one_run:
        return pool_inputs(config, combo, settings["ingredients"])
    if seed is None:
        raise ValueError(f"merging.soups.{soup}: one model per run, named {soup}-seed<N>")
    return [
        f"{run.directory}/snapshots"
        for pool in settings["ingredients"]
        for run in pool_runs(config, combo, pool)
        if run.seed == seed
    ]


def soup_start(config: Mapping[str, Any], combo: str, method: str) -> list[str]:
    """The common start an anchored soup (``model_stock``, ``ties``) merges around
    (``soup_anchor``): the combination's shared initialisation, or the pretrained start of the
    study's encoder; none for other soups. ``lesionsoup merge --anchor`` checks it against
    the ingredients' sidecars."""
    soup, _ = _soup_of(config, method)
    anchor = soup_anchor(config, soup, dict(_merging(config).get("soups", {})[soup] or {}))
    if anchor == INIT_ANCHOR:
        return [paths.init(combo)]
    if anchor == PRETRAINED_ANCHOR:
        return [str(paths.pretrained_start(config["model"]))]
    return []


def soup_references(config: Mapping[str, Any], combo: str, method: str) -> list[str]:
    """The models a merged model's gain over its ingredients is measured against
    (``analysis.averaging``): its ingredients, where each is one checkpoint; for one run's
    model (SWA), the checkpoint of its base that the run continues; none where an ingredient
    is a snapshot folder or a list of trials, whose models are not evaluated one by one."""
    soup, seed = _soup_of(config, method)
    pools = soup_settings(config, soup)["ingredients"]
    if seed is not None:
        runs = [run for pool in pools for run in pool_runs(config, combo, pool) if run.seed == seed]
        return [str(continued_from(run.combo, run.recipe, run.seed)) for run in runs]
    inputs = pool_inputs(config, combo, pools)
    return inputs if all(path.endswith(".safetensors") for path in inputs) else []


def soup_ensemble(config: Mapping[str, Any], combo: str, method: str) -> str | None:
    """The configured ensemble of exactly a merged model's pools (all their models), if any."""
    pools = soup_settings(config, _soup_of(config, method)[0])["ingredients"]
    for name in _merging(config).get("ensembles", {}):
        settings = ensemble_settings(config, name)
        if settings["top"] is None and settings["ingredients"] == pools:
            return paths.ensemble(combo, name)
    return None


def soup_arguments(config: Mapping[str, Any], method: str) -> str:
    """The ``lesionsoup merge`` options of a configured soup: its settings, and the BatchNorm
    sample where it recomputes the statistics."""
    soup = soup_settings(config, method)
    return option_flags(MERGE_OPTIONS, {**soup, **(soup["bn_recompute"] or {})})


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
    return option_flags(ENSEMBLE_OPTIONS, ensemble_settings(config, name))


def merged_models(config: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(path, combination, method) of every merged model and ensemble, for evaluation; a soup's
    method names its rule and, for a part soup, its part (``core.methods.method_name``)."""
    merging = _merging(config)
    models = []
    for combo in merging_combinations(config):
        for method in soup_methods(config, combo):
            settings = soup_settings(config, method)
            rule_method = method_name(settings["rule"], settings["part"])
            models.append((paths.merged(combo, method), combo, rule_method))
        for name in merging.get("ensembles", {}):
            models.append((paths.ensemble(combo, name), combo, ENSEMBLE))
    return models
