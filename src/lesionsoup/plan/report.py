"""The ``report`` section of a study's config: defaults filled in, and the jobs it asks for.

Snakemake's schema validation does not fill defaults inside a referenced
schema, so the rules read the section through ``report_settings``; the
defaults here are those documented in ``workflow/schemas/report.schema.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lesionsoup.core.metrics import METRIC_LABELS
from lesionsoup.core.style_features import STYLE_FEATURES
from lesionsoup.plan import paths
from lesionsoup.plan.study import combo_caches, configured

DEFAULTS: dict[str, Any] = {
    "metric": "ap",
    "method": "single",
    "coarse": ["RETLES"],
    "pr_top": 3,
    "qualitative": {"images": 3, "models": {}, "default_models": 3},
    "annotation_style": {
        "clusters": 2,
        "features": list(STYLE_FEATURES),
        "resamples": 200,
        "seed": 0,
        "settings": {},
    },
    "connectivity": {
        "points": 11,
        "bn_policies": ["average", "recompute"],
        "sharpness": {"radii": [0.05, 0.1, 0.2], "directions": 3, "seed": 0},
        "pairs": {},
    },
}


def _filled(defaults: Mapping[str, Any], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(defaults)}")
    result = {}
    for key, default in defaults.items():
        value = given.get(key, default)
        if isinstance(default, dict) and default and isinstance(value, Mapping):
            value = _filled(default, value, f"{where}.{key}")
        result[key] = value
    return result


def report_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config["report"]`` (may be absent) over ``DEFAULTS``, nested sections included.

    ``coarse`` may name the default's registered datasets a study leaves out; any
    other name must be a configured dataset (a misspelt one stops planning here). An
    unknown headline ``metric`` is refused here too, not after the study ran.
    """
    settings = _filled(DEFAULTS, config.get("report") or {}, "report")
    others = [name for name in settings["coarse"] if name not in DEFAULTS["coarse"]]
    configured(config, "report.coarse", others)
    if settings["metric"] not in METRIC_LABELS:
        known = sorted(METRIC_LABELS)
        raise ValueError(f"report.metric: unknown metric {settings['metric']!r}; known: {known}")
    return settings


def qualitative_models(config: Mapping[str, Any], evaluated: Mapping[str, Any]) -> dict[str, str]:
    """Label -> model file of the qualitative figures: configured, else the first evaluated.

    ``evaluated`` maps keys to ``plan.evaluation.EvaluatedModel``s; a default label is the
    model's key without its folder kind (``IDRID/base/seed0``, ``IDRID/greedy``).
    """
    settings = report_settings(config)["qualitative"]
    if settings["models"]:
        return dict(settings["models"])
    first = list(evaluated.values())[: settings["default_models"]]
    return {model.key.split("/", 1)[1].removesuffix("/best"): model.path for model in first}


def connectivity_inputs(config: Mapping[str, Any], pair: str) -> dict[str, Any]:
    """The two checkpoints of a configured pair and the caches of its combination."""
    pairs = report_settings(config)["connectivity"]["pairs"]
    if pair not in pairs:
        raise ValueError(f"unknown connectivity pair {pair!r}; configured: {sorted(pairs)}")
    chosen = pairs[pair]
    return {"a": chosen["a"], "b": chosen["b"], "caches": combo_caches(chosen["combo"])}


def report_targets(config: Mapping[str, Any], test_datasets: list[str]) -> list[str]:
    """Every figure, table and analysis of the report, for ``rule all``."""
    pairs = report_settings(config)["connectivity"]["pairs"]
    return [
        paths.SUMMARY,
        f"{paths.REPORT}/pr_curves.png",
        f"{paths.ANNOTATION_STYLE}/clusters.png",
        *(paths.QUALITATIVE.format(test=test) for test in test_datasets),
        *(f"{paths.connectivity(pair)}.png" for pair in pairs),
    ]
