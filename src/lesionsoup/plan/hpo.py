"""The hyperparameter studies a config asks for, as workflow jobs; no optuna here.

One study per (combination, tuned recipe); its trials are jobs ``trials/0`` ...
``trials/<n_trials - 1>``, so raising ``n_trials`` only adds jobs. A study's
name carries a digest of everything that defines it (search space, trial
settings, sampler, pruner, model, shared initialisation), so a changed search
space starts a new study and never mixes trials of two spaces. The final
training of a tuned recipe reads the exported ``best_params.yaml``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lesionsoup.core import paths
from lesionsoup.core.search_space import TUNABLE, check_space
from lesionsoup.core.specs import TrainSettings
from lesionsoup.plan import study as study_config


@dataclass(frozen=True)
class StudyPlan:
    combo: str
    recipe: str

    @property
    def directory(self) -> str:
        return paths.hpo_study(self.combo, self.recipe)

    def trial_output(self, index: int) -> str:
        """Job ``index``'s folder: trial.json, and best.safetensors for a complete trial."""
        return paths.hpo_trial(self.combo, self.recipe, index)


def _section(config: Mapping[str, Any]) -> Mapping[str, Any]:
    return config.get("hpo") or {}


def plans(config: Mapping[str, Any]) -> list[StudyPlan]:
    """Every study the config asks for: tuned recipes x tuned combinations."""
    section = _section(config)
    recipes = section.get("recipes", [])
    unknown = sorted(set(recipes) - set(config["training"]["recipes"]))
    if unknown:
        raise ValueError(f"hpo.recipes names unknown recipes {unknown}")
    combos = study_config.combinations(config)
    if section.get("combinations") is not None:
        combos = study_config.dataset_combinations(config, section["combinations"])
    return [StudyPlan(combo, recipe) for combo in combos for recipe in recipes]


def is_tuned(config: Mapping[str, Any], combo: str, recipe: str) -> bool:
    return StudyPlan(combo, recipe) in plans(config)


def trial_outputs(config: Mapping[str, Any]) -> list[str]:
    """The trial jobs' outputs; raising ``n_trials`` only appends to this list."""
    return [
        folder
        for plan in plans(config)
        for folder in trial_folders(config, plan.combo, plan.recipe)
    ]


def trial_folders(config: Mapping[str, Any], combo: str, recipe: str) -> list[str]:
    """The trial jobs of one study (the export's input)."""
    plan = StudyPlan(combo, recipe)
    return [plan.trial_output(index) for index in range(_section(config)["n_trials"])]


def export_outputs(config: Mapping[str, Any]) -> list[str]:
    """The files of every study's export that ``rule all`` asks for."""
    templates = (paths.HPO_BEST_PARAMS, paths.HPO_INGREDIENTS, paths.HPO_HISTORY)
    return [
        template.format(combo=plan.combo, recipe=plan.recipe)
        for plan in plans(config)
        for template in templates
    ]


def storage_location(config: Mapping[str, Any], combo: str, recipe: str) -> str:
    """The configured RDB URL or journal file, else a journal file next to the study's outputs."""
    return _section(config).get("storage") or paths.HPO_JOURNAL.format(combo=combo, recipe=recipe)


def definition(config: Mapping[str, Any], recipe: str) -> dict[str, Any]:
    """Everything that defines a study of ``recipe`` (besides its initialisation), as JSON."""
    section = _section(config)
    base = study_config.recipe_settings(config, recipe, section["seed"])
    settings = study_config.checked_settings({**base, **section["trial"]}, "hpo.trial")
    space = dict(section["space"])
    check_space(space, settings)
    return {
        "space": space,
        "settings": settings,
        "sampler": {"seed": section["seed"], "startup_trials": section["startup_trials"]},
        "pruner": dict(section["pruner"]),
        "model": study_config.model_spec(config).as_dict(),
    }


def study_name(
    combo: str, recipe: str, definition: Mapping[str, Any], init_id: str, caches: Mapping[str, str]
) -> str:
    """The study's name: a digest of its definition, its initialisation and the fingerprints
    of the caches its trials train on (by name), so that changed data starts a new study."""
    text = json.dumps(
        {"definition": definition, "init_id": init_id, "caches": dict(caches)}, sort_keys=True
    )
    return f"{combo}.{recipe}.{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def read_best_params(path: Path) -> dict[str, Any]:
    try:
        summary = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read the best hyperparameters ({error})") from error
    if not isinstance(summary, dict) or not isinstance(summary.get("params"), dict):
        raise ValueError(f"{path}: expected a mapping with a `params` mapping")
    unknown = sorted(set(summary["params"]) - TUNABLE)
    if unknown:
        raise ValueError(f"{path}: {unknown} are not training settings")
    return summary["params"]


def with_best_params(settings: Mapping[str, Any], best_params_path: Path | None) -> dict[str, Any]:
    """A run's settings, overridden by its study's best parameters when it was tuned."""
    if best_params_path is None:
        return dict(settings)
    return TrainSettings.from_dict({**settings, **read_best_params(best_params_path)}).as_dict()
