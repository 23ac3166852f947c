"""A study's search space as Optuna distributions, and a trial's values in it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

from lesionsoup.core.search_space import check_space


def distributions(space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Optuna distributions of a config search space; unknown settings are refused."""
    check_space(space)
    result = {}
    for name, spec in space.items():
        kind = spec["type"]
        if kind == "categorical":
            result[name] = optuna.distributions.CategoricalDistribution(list(spec["choices"]))
        elif kind in ("float", "int"):
            cls = (
                optuna.distributions.FloatDistribution
                if kind == "float"
                else optuna.distributions.IntDistribution
            )
            options = {key: spec[key] for key in ("log", "step") if key in spec}
            try:
                result[name] = cls(spec["low"], spec["high"], **options)
            except ValueError as error:
                raise ValueError(f"hpo.space.{name}: {error}") from error
        else:
            raise ValueError(f"hpo.space.{name}: unknown type {kind!r}")
    return result


def suggest(trial: optuna.Trial, space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The trial's values for every parameter of the space."""
    values: dict[str, Any] = {}
    for name, dist in distributions(space).items():
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            values[name] = trial.suggest_categorical(name, dist.choices)
            continue
        suggest_number = (
            trial.suggest_int
            if isinstance(dist, optuna.distributions.IntDistribution)
            else trial.suggest_float
        )
        values[name] = suggest_number(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return values
