"""The study's result matrix: every model to evaluate, on every test set, one job a model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

from lesionsoup.core import paths
from lesionsoup.core.methods import INGREDIENT, SINGLE
from lesionsoup.plan import hpo
from lesionsoup.plan.averaging import reference_models
from lesionsoup.plan.ingredients import ingredient_runs, merged_models
from lesionsoup.plan.study import runs, test_datasets


@dataclass(frozen=True)
class EvaluatedModel:
    """A model of the study's result matrix: a checkpoint, merged model or ensemble."""

    path: str
    combo: str
    method: str

    @property
    def key(self) -> str:
        """The path without ``results/`` and suffix: names its evaluation files."""
        return paths.model_key(self.path)


def evaluated_models(config: Mapping[str, Any]) -> dict[str, EvaluatedModel]:
    """Every model to evaluate on every test set, by key.

    Each run's best checkpoint (method ``single``), every merged model and ensemble
    (method = its merge rule, or ``ensemble``), and the ingredients merged models are
    compared with that none of those is (method ``ingredient``).
    """
    models = [
        EvaluatedModel(f"{run.directory}/best.safetensors", run.combo, SINGLE)
        for run in runs(config)
    ]
    models += [EvaluatedModel(*entry) for entry in merged_models(config)]
    evaluated = {model.key: model for model in models}
    for path, combo in reference_models(config):
        model = EvaluatedModel(path, combo, INGREDIENT)
        evaluated.setdefault(model.key, model)
    return evaluated


def cost_records(config: Mapping[str, Any], evaluated: Mapping[str, EvaluatedModel]) -> list[str]:
    """The benchmark records ``costs.csv`` reads (``evaluation.job_costs``): those of the jobs
    that wrote the evaluated models, of every training run and HPO trial (a soup's
    ingredients). A record is declared where it exists or its job has yet to write what it
    makes: a model or run folder without its record (written before the records were, or by a
    job Snakemake did not run) is costed from its sidecar instead of trained again."""
    products = {paths.writer_benchmark(model.path): model.path for model in evaluated.values()}
    products |= {
        paths.TRAIN_BENCHMARK.format(combo=run.combo, recipe=run.recipe, seed=run.seed): (
            run.directory
        )
        for run in runs(config) + ingredient_runs(config)
    }
    products |= {
        paths.writer_benchmark(f"{folder}/"): folder
        for plan in hpo.plans(config)
        for folder in hpo.trial_folders(config, plan.combo, plan.recipe)
    }
    return sorted(
        record
        for record, product in products.items()
        if record is not None and (os.path.exists(record) or not os.path.exists(product))
    )


def model_table(evaluated: Mapping[str, EvaluatedModel]) -> dict[str, list[str]]:
    """Model path -> [train_combo, method]: what ``metrics.csv`` says of each model."""
    return {model.path: [model.combo, model.method] for model in evaluated.values()}


def evaluation_files(
    config: Mapping[str, Any], evaluated: Mapping[str, EvaluatedModel]
) -> list[str]:
    """One evaluation file per (test set, model): the inputs of ``metrics.csv``."""
    return [paths.evaluation(test, key) for test in test_datasets(config) for key in evaluated]


def model_evaluation_files(config: Mapping[str, Any], model: str) -> list[str]:
    """The evaluation files of one model key (``{model}`` for the rule), one per test set.

    One job writes them all: the model is loaded once for every test set.
    """
    return [paths.evaluation(test, model) for test in test_datasets(config)]


def named_comparisons(
    config: Mapping[str, Any], evaluated: Mapping[str, EvaluatedModel]
) -> dict[str, dict[str, str]]:
    """``evaluation.comparisons``: name -> {a, b}, each an evaluated model's file.

    A file that no evaluated model has (a typo, a model of no planned run) is refused
    here, when the workflow is planned, rather than after every evaluation.
    """
    paths_of = {os.path.normpath(model.path): model.path for model in evaluated.values()}
    named = {}
    for name, pair in config.get("evaluation", {}).get("comparisons", {}).items():
        chosen = {}
        for side in ("a", "b"):
            where = f"evaluation.comparisons.{name}.{side}"
            if side not in pair:
                raise ValueError(f"{where}: missing; a comparison names models a and b")
            file = paths_of.get(os.path.normpath(str(pair[side])))
            if file is None:
                known = sorted(paths_of.values())
                close = get_close_matches(str(pair[side]), known, n=3, cutoff=0.5) or known[:3]
                raise ValueError(
                    f"{where}: {pair[side]} is not one of the {len(known)} evaluated models "
                    f"(e.g. {', '.join(close)})"
                )
            chosen[side] = file
        if chosen["a"] == chosen["b"]:
            raise ValueError(f"evaluation.comparisons.{name}: compares {chosen['a']} with itself")
        named[name] = chosen
    return named
