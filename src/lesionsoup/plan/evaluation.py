"""The study's result matrix: every model to evaluate, on every test set."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lesionsoup.plan.ingredients import merged_models
from lesionsoup.plan.study import runs


@dataclass(frozen=True)
class EvaluatedModel:
    """A model of the study's result matrix: a checkpoint, merged model or ensemble."""

    path: str
    combo: str
    method: str

    @property
    def key(self) -> str:
        """The path without ``results/`` and suffix: names its evaluation files."""
        return self.path.removeprefix("results/").rsplit(".", 1)[0]


def evaluated_models(config: Mapping[str, Any]) -> dict[str, EvaluatedModel]:
    """Every model to evaluate on every test set, by key.

    Each run's best checkpoint (method ``single``), and every merged model and
    ensemble (method = its merge rule, or ``ensemble``).
    """
    models = [
        EvaluatedModel(f"{run.directory}/best.safetensors", run.combo, "single")
        for run in runs(config)
    ]
    models += [EvaluatedModel(*entry) for entry in merged_models(config)]
    return {model.key: model for model in models}
