"""What a study's config asks for, as job parameters: runs, recipes, model spec.

The Snakemake rules turn these into wildcards and ``params:``; keeping the
expansion here keeps it testable and out of the ``.smk`` files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lesionsoup.core import paths
from lesionsoup.core.combos import combo_members, expand_combinations
from lesionsoup.core.schedules import rising_schedule
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.plan import datasets


@dataclass(frozen=True)
class Run:
    combo: str
    recipe: str
    seed: int

    @property
    def directory(self) -> str:
        return paths.run(self.combo, self.recipe, self.seed)


#: How a study's runs start (``training.init``): from the combination's shared frozen-encoder
#: warm-up, or each from the pretrained encoder with a decoder and head drawn from its seed.
STARTS: tuple[str, ...] = ("shared", "independent")


#: Keys of a recipe that say which runs it makes and how they start, not how they train:
#: ``init`` (over ``training.init``), ``seeds`` and ``combinations`` (over the study's).
RECIPE_PLAN_KEYS: tuple[str, ...] = ("init", "seeds", "combinations")


def _recipe(config: Mapping[str, Any], recipe: str) -> Mapping[str, Any]:
    recipes = config["training"]["recipes"]
    if recipe not in recipes:
        raise ValueError(f"unknown recipe {recipe!r}; configured: {sorted(recipes)}")
    return recipes[recipe] or {}


def study_start(config: Mapping[str, Any]) -> str:
    """``training.init``: how runs start where their recipe does not say."""
    start = config["training"].get("init", "shared")
    if start not in STARTS:
        raise ValueError(f"training.init: {start!r} is not one of {list(STARTS)}")
    return start


def recipe_start(config: Mapping[str, Any], recipe: str) -> str:
    """How the runs of a named recipe start: its own ``init``, else ``training.init``."""
    start = _recipe(config, recipe).get("init", study_start(config))
    if start not in STARTS:
        raise ValueError(f"training.recipes.{recipe}.init: {start!r} is not one of {list(STARTS)}")
    return start


def start_input(config: Mapping[str, Any], combo: str, recipe: str) -> list[str]:
    """The shared initialisation a run or trial of ``recipe`` on ``combo`` starts from (none
    if it starts independently)."""
    return [paths.init(combo)] if recipe_start(config, recipe) == "shared" else []


def recipe_seeds(config: Mapping[str, Any], recipe: str) -> list[int]:
    """The seeds a named recipe runs: its own ``seeds``, else ``training.seeds``."""
    return list(_recipe(config, recipe).get("seeds", config["training"]["seeds"]))


def scoped_out(config: Mapping[str, Any], recipe: str, combo: str) -> bool:
    """Whether a named recipe names its own ``combinations`` and ``combo`` is not one: its
    runs, and its pool in soups, exist only there (a merging combination outside the
    study's combinations still gets the runs of an unscoped recipe)."""
    own = _recipe(config, recipe).get("combinations")
    return own is not None and combo not in recipe_combinations(config, recipe)


def recipe_combinations(config: Mapping[str, Any], recipe: str) -> list[str]:
    """The combinations a named recipe trains on: its own ``combinations`` (each must be one
    of the study's), else every combination of the study."""
    study = combinations(config)
    chosen = _recipe(config, recipe).get("combinations")
    if chosen is None:
        return study
    key = f"training.recipes.{recipe}.combinations"
    try:
        chosen = dataset_combinations(config, chosen)
    except ValueError as error:
        raise ValueError(f"{key}: {error}") from None
    if stray := sorted(set(chosen) - set(study)):
        raise ValueError(f"{key}: {stray} are not in training.combinations")
    return chosen


def combo_caches(combo: str) -> list[str]:
    """The caches a combination trains and validates on, one per member dataset."""
    return [paths.cache(dataset) for dataset in combo_members(combo)]


def model_spec(config: Mapping[str, Any]) -> ModelSpec:
    return ModelSpec.from_dict(dict(config["model"]))


def dataset_combinations(config: Mapping[str, Any], spec: str | list[str]) -> list[str]:
    """``expand_combinations`` of a config value over the configured datasets, which knows
    the subset datasets' sources (``plan.datasets``)."""
    return expand_combinations(spec, sorted(config["datasets"]), datasets.sources(config))


def combinations(config: Mapping[str, Any]) -> list[str]:
    return dataset_combinations(config, config["training"]["combinations"])


def checked_settings(values: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``values`` as complete training settings; a ValueError naming ``key`` where they are
    not valid, or where their schedule would rise instead of decaying."""
    try:
        settings = TrainSettings.from_dict(values)
    except ValueError as error:
        raise ValueError(f"{key}: {error}") from error
    if problem := rising_schedule(settings.schedule, settings.lr, settings.min_lr):
        raise ValueError(f"{key}: {problem}")
    return settings.as_dict()


def recipe_settings(config: Mapping[str, Any], recipe: str, seed: int) -> dict[str, Any]:
    """The training settings of one run: shared defaults, then the recipe, then the seed."""
    training = config["training"]
    own = {k: v for k, v in _recipe(config, recipe).items() if k not in RECIPE_PLAN_KEYS}
    settings = {**training["defaults"], **own, "seed": seed}
    return checked_settings(settings, f"training.recipes.{recipe}")


def devices(settings: Mapping[str, Any]) -> int:
    """The devices a run with these settings trains on (a job's GPUs; ``TrainSettings``'s
    default where they do not say)."""
    return int(settings.get("devices", TrainSettings.devices))


def warmup_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Settings of the warm-up run that makes a combination's shared initialisation."""
    training = config["training"]
    settings = {**training["defaults"], **training["warmup"], "freeze_encoder": True}
    return checked_settings(settings, "training.warmup")


def runs(config: Mapping[str, Any]) -> list[Run]:
    """Every run of the named recipes: each on its combinations, over its seeds."""
    recipes = config["training"]["recipes"]
    trained = {recipe: recipe_combinations(config, recipe) for recipe in recipes}
    return [
        Run(combo, recipe, seed)
        for combo in combinations(config)
        for recipe in recipes
        if combo in trained[recipe]
        for seed in recipe_seeds(config, recipe)
    ]


def configured(config: Mapping[str, Any], key: str, names: Iterable[str]) -> list[str]:
    """``names`` sorted; a ValueError naming ``key`` where one is no dataset under ``datasets``.

    The schema only checks that a name is well formed, since a dataset of one's own
    (``layout: generic``) may have any name; this is where a misspelt one stops.
    """
    names = sorted(names)
    unknown = [name for name in names if name not in config["datasets"]]
    if unknown:
        raise ValueError(
            f"{key}: {unknown} not configured under 'datasets' (configured: "
            f"{sorted(config['datasets'])})"
        )
    return names


def test_datasets(config: Mapping[str, Any]) -> list[str]:
    """The datasets every model is tested on; ``all``: every configured one except the
    subset datasets (``of``), whose test part is their source's."""
    wanted = config["evaluation"]["test_datasets"]
    if wanted == "all":
        return sorted(name for name in config["datasets"] if not datasets.is_subset(config, name))
    return configured(config, "evaluation.test_datasets", wanted)
