"""The study's result matrix: every model to evaluate, on every test set, one job a model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lesionsoup.plan import paths
from lesionsoup.plan.ingredients import merged_models
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


#: The method of a model that is one training run's best checkpoint: every other
#: method's baseline.
SINGLE = "single"


def evaluated_models(config: Mapping[str, Any]) -> dict[str, EvaluatedModel]:
    """Every model to evaluate on every test set, by key.

    Each run's best checkpoint (method ``single``), and every merged model and
    ensemble (method = its merge rule, or ``ensemble``).
    """
    models = [
        EvaluatedModel(f"{run.directory}/best.safetensors", run.combo, SINGLE)
        for run in runs(config)
    ]
    models += [EvaluatedModel(*entry) for entry in merged_models(config)]
    return {model.key: model for model in models}


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
