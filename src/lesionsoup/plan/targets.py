"""What ``rule all`` asks for; Snakemake plans every other job backwards from these files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lesionsoup.core import paths
from lesionsoup.plan import hpo, ingredients, report, study


def study_targets(config: Mapping[str, Any]) -> list[str]:
    """Every cache, every run's curves (named and ingredient runs), HPO exports, metrics, report.

    A run's ``curves.png`` stands for the whole run: it is published with its checkpoints.
    """
    caches = [paths.cache(dataset) for dataset in sorted(config["datasets"])]
    runs = study.runs(config) + ingredients.ingredient_runs(config)
    trained = [f"{run.directory}/curves.png" for run in dict.fromkeys(runs)]
    figures = report.report_targets(config, study.test_datasets(config))
    uncertainty = [paths.METRICS_CI, paths.COMPARISONS, paths.BOOTSTRAP]
    return [*caches, *trained, *hpo.export_outputs(config), paths.METRICS, *uncertainty, *figures]
