"""The paper plan evaluates each model in one job over all its test sets."""

from __future__ import annotations

import re

import pytest
import yaml
from support.workflow import REPO, snakemake, write_config

from lesionsoup.core import paths
from lesionsoup.plan import study
from lesionsoup.plan.evaluation import evaluated_models, evaluation_files, named_comparisons


def paper_config(tmp_path) -> dict:
    """config/paper.yaml with every dataset root an (empty) folder: enough for a dry run."""
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    for name, dataset in config["datasets"].items():
        dataset["root"] = str(tmp_path / "roots" / name)
        (tmp_path / "roots" / name).mkdir(parents=True)
    return config


def test_paper_plan_has_at_most_one_evaluation_job_per_model(tmp_path):
    config = paper_config(tmp_path)
    configfile = write_config(tmp_path / "paper.yaml", config)
    result = snakemake(tmp_path / "work", configfile, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = re.findall(r"^(?:local)?rule (\w+):", result.stdout, re.MULTILINE)
    evaluations = [rule for rule in jobs if rule == "evaluate"]
    models, tests = evaluated_models(config), study.test_datasets(config)
    assert len(models) > 1 and len(tests) > 1
    assert len(evaluations) == len(models)  # not models x test sets
    # every (test set, model) file is still planned, and read by the aggregation
    planned = set(re.findall(r"results/eval/[^\s,]+\.json", result.stdout))
    expected = set(evaluation_files(config, models))
    assert len(expected) == len(models) * len(tests)
    assert expected | {paths.EVALUATED_MODELS} <= planned


def test_tiny_evaluation_rules_run_in_the_main_process(tmp_path, monkeypatch):
    """``localrules``: no cluster job (queue wait, start-up) for a table of a few rows."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    configfile = write_config(tmp_path / "paper.yaml", paper_config(tmp_path))
    monkeypatch.chdir(tmp_path)
    with SnakemakeApi(OutputSettings(quiet=True)) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=[configfile]),
            snakefile=REPO / "Snakefile",
            workdir=tmp_path / "work",
        )
        local = set(workflow._workflow._localrules)  # no public accessor
    assert {"evaluated_models", "aggregate"} <= local
    assert "evaluate" not in local


def test_named_comparisons_are_evaluated_model_files(tmp_path):
    config = paper_config(tmp_path)
    models = [model.path for model in evaluated_models(config).values()]
    config["evaluation"]["comparisons"] = {"pair": {"a": f"./{models[0]}", "b": models[-1]}}
    assert named_comparisons(config, evaluated_models(config)) == {
        "pair": {"a": models[0], "b": models[-1]}  # as the study names them
    }
    for side, bad in (("a", "results/models/IDRID/base/seed9/best.safetensors"), ("b", "x.json")):
        pair = {"a": models[0], "b": models[-1], side: bad}
        config["evaluation"]["comparisons"] = {"typo": pair}
        with pytest.raises(ValueError, match=rf"evaluation\.comparisons\.typo\.{side}: .* not one"):
            named_comparisons(config, evaluated_models(config))
    config["evaluation"]["comparisons"] = {"same": {"a": models[0], "b": models[0]}}
    with pytest.raises(ValueError, match="with itself"):
        named_comparisons(config, evaluated_models(config))


def test_planning_refuses_a_named_comparison_of_no_evaluated_model(tmp_path):
    config = paper_config(tmp_path)
    models = [model.path for model in evaluated_models(config).values()]
    bad = "results/merged/IDRID/nope.safetensors"
    config["evaluation"]["comparisons"] = {"typo": {"a": bad, "b": models[0]}}
    result = snakemake(tmp_path / "work", write_config(tmp_path / "c.yaml", config), "--dry-run")
    assert result.returncode != 0
    assert f"evaluation.comparisons.typo.a: {bad} is not one" in result.stdout + result.stderr
