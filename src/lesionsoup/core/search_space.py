"""What a hyperparameter search space (``hpo.space``) may hold: training settings, of known
types, over ranges that are not empty; checked when the workflow is planned and again when a
trial suggests its values (``lesionsoup.hpo.space``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from lesionsoup.core.schedules import rising_schedule
from lesionsoup.core.specs import TrainSettings

#: Every training setting but the seed and the device count (the GPUs a trial job asks for).
TUNABLE = frozenset(field.name for field in dataclasses.fields(TrainSettings)) - {"seed", "devices"}
SPACE_TYPES = ("categorical", "float", "int")


def check_space(
    space: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any] | None = None
) -> None:
    """Refuse a search space over unknown settings, of unknown types or with empty ranges, and
    a learning-rate range reaching down to the trials' ``min_lr`` (a rising schedule)."""
    unknown = sorted(set(space) - TUNABLE)
    if unknown:
        raise ValueError(f"hpo.space: {unknown} are not training settings ({sorted(TUNABLE)})")
    for name, spec in space.items():
        if spec["type"] not in SPACE_TYPES:
            raise ValueError(f"hpo.space.{name}: unknown type {spec['type']!r}")
        if spec["type"] == "categorical":
            continue
        if not spec["low"] <= spec["high"]:
            raise ValueError(f"hpo.space.{name}: low {spec['low']} exceeds high {spec['high']}")
        if spec.get("log") and spec["low"] <= 0:
            raise ValueError(f"hpo.space.{name}: a log range needs low > 0, not {spec['low']}")
    if settings is not None and "lr" in space:
        lr = space["lr"]
        key, low = ("choices", min(lr["choices"])) if "choices" in lr else ("low", lr["low"])
        if problem := rising_schedule(settings["schedule"], low, settings["min_lr"]):
            raise ValueError(f"hpo.space.lr.{key}: {problem}")
