"""When does weight averaging work: every merged model of a study, its condition and what its
gain is measured against (``lesionsoup.analysis.averaging``).

A merged model's condition is its rule, the part it averages, its BatchNorm policy, how its
ingredients started (``shared``, ``independent``, or ``mixed`` for pools of both) and the
training-set fraction of its combination (``train_fraction`` of its datasets' splits; NaN
when they differ). Its references are the models whose mean it is compared with
(``ingredients.soup_references``), evaluated like every other model (method ``ingredient``
where nothing else evaluates them), and its ensemble the configured ensemble of the same
pools, where there is one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lesionsoup.core import paths
from lesionsoup.core.combos import combo_members
from lesionsoup.plan import ingredients

#: The start of a merged model whose pools hold runs of both starts.
MIXED = "mixed"


def combo_fraction(config: Mapping[str, Any], combo: str) -> float:
    """The ``train_fraction`` the datasets of a combination share; NaN when they differ."""
    fractions = {
        float((config["datasets"][member].get("split") or {}).get("train_fraction", 1.0))
        for member in combo_members(combo)
    }
    return fractions.pop() if len(fractions) == 1 else math.nan


def _start(config: Mapping[str, Any], pools: list[str]) -> str:
    starts = set().union(*(ingredients.pool_starts(config, pool) for pool in pools))
    return starts.pop() if len(starts) == 1 else MIXED


def merged_conditions(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One record per merged model (not ensembles) of every merging combination."""
    records = []
    for combo in ingredients.merging_combinations(config):
        for method in ingredients.soup_methods(config, combo):
            settings = ingredients.soup_settings(config, method)
            records.append(
                {
                    "model": paths.merged(combo, method),
                    "train_combo": combo,
                    "soup": method,
                    "rule": settings["rule"],
                    "part": settings["part"],
                    "bn_policy": settings["bn_policy"],
                    "start": _start(config, settings["ingredients"]),
                    "fraction": combo_fraction(config, combo),
                    "references": ingredients.soup_references(config, combo, method),
                    "ensemble": ingredients.soup_ensemble(config, combo, method),
                }
            )
    return records


def reference_models(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(checkpoint, combination) of every model a merged model is compared with."""
    return list(
        dict.fromkeys(
            (reference, record["train_combo"])
            for record in merged_conditions(config)
            for reference in record["references"]
        )
    )
