"""The ``report`` section of a study's config: defaults filled in, and the jobs it asks for.

The rules read the section through ``report_settings``, which fills in the
defaults of ``core.report_defaults.REPORT_DEFAULTS`` (the ones
``workflow/schemas/report.schema.yaml`` documents; a test holds them equal), so
that a config's report section needs no key, nested sections included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lesionsoup.core import paths
from lesionsoup.core.combos import combo_members
from lesionsoup.core.merge_rules import DEFAULT_PART, SIZE_CURVE_SOUPS, merge_rule
from lesionsoup.core.methods import ENSEMBLE, INGREDIENT, SINGLE
from lesionsoup.core.metrics import METRIC_LABELS
from lesionsoup.core.report_defaults import REPORT_DEFAULTS
from lesionsoup.plan import averaging, ingredients
from lesionsoup.plan.evaluation import evaluated_models
from lesionsoup.plan.options import SIZE_CURVE_OPTIONS, option_flags
from lesionsoup.plan.study import combo_caches, configured, test_datasets


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
    """``config["report"]`` (may be absent) over ``REPORT_DEFAULTS``, nested sections included.

    ``coarse`` may name the default's registered datasets a study leaves out; any
    other name must be a configured dataset (a misspelt one stops planning here). An
    unknown headline ``metric`` is refused here too, not after the study ran.
    """
    settings = _filled(REPORT_DEFAULTS, config.get("report") or {}, "report")
    others = [name for name in settings["coarse"] if name not in REPORT_DEFAULTS["coarse"]]
    configured(config, "report.coarse", others)
    if settings["metric"] not in METRIC_LABELS:
        known = sorted(METRIC_LABELS)
        raise ValueError(f"report.metric: unknown metric {settings['metric']!r}; known: {known}")
    return settings


def caption_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """The study's values the captions of ``snakemake --report`` quote (``workflow/report``),
    computed once for every rule's caption-only params: the headline metric's label, the
    bootstrap's confidence (as a fraction and as a percentage), resamples and alpha, and the
    size curves' largest number of members."""
    bootstrap = config["evaluation"]["bootstrap"]
    settings = report_settings(config)
    return {
        "metric_label": METRIC_LABELS[settings["metric"]],
        "confidence": bootstrap["confidence"],
        "percent": f"{bootstrap['confidence']:.0%}",
        "resamples": bootstrap["resamples"],
        "alpha": bootstrap["alpha"],
        "max_members": settings["size_curves"]["max_members"],
    }


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


def connectivity_part(config: Mapping[str, Any], pair: str) -> str:
    """What moves along a configured pair's path: its ``part`` (default: the full model)."""
    connectivity_inputs(config, pair)  # refuses an unknown pair
    return report_settings(config)["connectivity"]["pairs"][pair].get("part", DEFAULT_PART)


def connectivity_parts(config: Mapping[str, Any]) -> dict[str, str]:
    """Pair -> the part that moves along its path, for every configured pair."""
    pairs = report_settings(config)["connectivity"]["pairs"]
    return {pair: connectivity_part(config, pair) for pair in pairs}


def barrier_inputs(config: Mapping[str, Any]) -> list[str]:
    """The connectivity curve of every pair, in ``connectivity_parts`` order: the inputs of
    the barrier figure."""
    return [f"{paths.connectivity(pair)}.csv" for pair in connectivity_parts(config)]


def size_curve_combos(config: Mapping[str, Any]) -> list[str]:
    """The merging combinations whose size-curve pool has at least two candidates (a snapshot
    folder or an ingredient list counts as several); none without a ``merging`` section."""
    if not config.get("merging"):
        return []
    pool = report_settings(config)["size_curves"]["pool"]
    chosen = []
    for combo in ingredients.merging_combinations(config):
        inputs = ingredients.pool_inputs(config, combo, pool)
        if len(inputs) >= 2 or any(not path.endswith(".safetensors") for path in inputs):
            chosen.append(combo)
    return chosen


def size_curve_inputs(config: Mapping[str, Any], combo: str) -> dict[str, list[str]]:
    """The pool's candidate files of a combination, and its caches (validation ranks the
    candidates; the test splits score the points)."""
    pool = report_settings(config)["size_curves"]["pool"]
    return {
        "candidates": ingredients.pool_inputs(config, combo, pool),
        "caches": combo_caches(combo),
    }


def size_curve_evaluations(config: Mapping[str, Any], combo: str) -> list[str]:
    """The study's evaluation files a combination's size curve may reuse: those of the pool's
    evaluated candidates and of the combination's soups, on its own test sets (which of them
    is a point's model is decided from their contents, ``analysis.size_curves``)."""
    candidates = set(size_curve_inputs(config, combo)["candidates"])
    models = [
        model
        for model in evaluated_models(config).values()
        if model.path in candidates
        or (model.combo == combo and model.method not in (SINGLE, ENSEMBLE, INGREDIENT))
    ]
    tests = [test for test in test_datasets(config) if test in combo_members(combo)]
    return [paths.evaluation(test, model.key) for test in tests for model in models]


def size_curve_policies(config: Mapping[str, Any]) -> dict[str, str]:
    """Each soup curve's BatchNorm policy: that of the study's first full-model soup of its
    rule, else the rule's default."""
    soups = [
        ingredients.soup_settings(config, name)
        for name in (config.get("merging") or {}).get("soups", {})
    ]
    policies = {}
    for curve in SIZE_CURVE_SOUPS:
        matching = [
            soup["bn_policy"]
            for soup in soups
            if soup["rule"] == curve and soup["part"] == DEFAULT_PART
        ]
        policies[curve] = matching[0] if matching else merge_rule(curve).bn_policy
    return policies


def size_curve_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``lesionsoup size-curve`` settings but the evaluation's, by option name: K, the
    headline metric, the soups' BatchNorm policies and, where one recomputes, the study's
    patches."""
    settings = report_settings(config)
    policies = size_curve_policies(config)
    return {
        "max_members": settings["size_curves"]["max_members"],
        "metric": settings["metric"],
        **{f"{curve}_bn_policy": policy for curve, policy in policies.items()},
        **(ingredients.bn_sample(config) if "recompute" in policies.values() else {}),
    }


def size_curve_arguments(config: Mapping[str, Any]) -> str:
    """The ``lesionsoup size-curve`` options of ``size_curve_settings``."""
    return option_flags(SIZE_CURVE_OPTIONS, size_curve_settings(config))


def averaging_table(config: Mapping[str, Any]) -> list[str]:
    """The averaging verdicts where a merged model has evaluated ingredients; else none."""
    if not config.get("merging") or "training" not in config:
        return []
    compared = any(record["references"] for record in averaging.merged_conditions(config))
    return [f"{paths.REPORT}/averaging.csv"] if compared else []


def report_targets(config: Mapping[str, Any], test_datasets: list[str]) -> list[str]:
    """Every figure, table and analysis of the report, for ``rule all``."""
    pairs = report_settings(config)["connectivity"]["pairs"]
    return [
        paths.SUMMARY,
        *(table.replace(".csv", ".png") for table in averaging_table(config)),
        *([f"{paths.REPORT}/barriers.png"] if pairs else []),
        f"{paths.REPORT}/pr_curves.png",
        f"{paths.REPORT}/reliability.png",
        f"{paths.ANNOTATION_STYLE}/clusters.png",
        *(paths.QUALITATIVE.format(test=test) for test in test_datasets),
        *(f"{paths.connectivity(pair)}.png" for pair in pairs),
        *(f"{paths.size_curves(combo)}.png" for combo in size_curve_combos(config)),
    ]
