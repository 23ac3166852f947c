"""The workflow on the tiny config: validation, a real run, and rerun semantics."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest
from support.permissions import EXPECTED, mode_of, wrong_modes
from support.workflow import (
    REPO,
    executed_rules,
    gpu_rule_blocks,
    load_tiny_config,
    planned_jobs,
    snakemake,
    write_config,
)

from lesionsoup.core import paths


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda c: c["preprocess"].update(sise=256), "sise"),
        (lambda c: c["preprocess"].update(size="big"), "size"),
        (lambda c: c["datasets"]["RETLES"].update(value_127="maybe"), "value_127"),
        (lambda c: c["training"]["recipes"]["base"].update(learning_rate=0.1), "learning_rate"),
        (lambda c: c["training"].update(combinations=["IDRID+FOO"]), "FOO"),
        (
            lambda c: (
                c["training"].update(init="independent"),
                c["merging"]["soups"].update(stock={"rule": "model_stock"}),
            ),
            "merging.soups.stock: the model_stock rule",
        ),
    ],
)
def test_bad_config_stops_before_any_job_naming_the_key(tmp_path, change, named):
    config = load_tiny_config()
    change(config)
    result = snakemake(tmp_path, write_config(tmp_path / "bad.yaml", config), "--cores", "1")
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
    assert "Failed validating" not in result.stdout + result.stderr  # no schema dump
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


def test_a_part_soup_reaches_the_merge_command(tmp_path):
    """Dry run: the schema takes ``part`` and the merge job passes it on as ``--part``."""
    config = load_tiny_config()
    config["merging"]["soups"]["encoders"] = {"rule": "uniform", "part": "encoder"}
    configfile = write_config(tmp_path / "parts.yaml", config)
    result = snakemake(tmp_path, configfile, "--dry-run", "--printshellcmds")
    assert result.returncode == 0, result.stdout + result.stderr
    merges = [line for line in result.stdout.splitlines() if "lesionsoup merge" in line]
    encoders = [line for line in merges if "encoders.safetensors" in line]
    assert encoders and all("--part encoder" in line for line in encoders)
    assert all("--part full" in line for line in merges if line not in encoders)


def test_anchored_soups_reach_the_merge_command(tmp_path):
    """Dry run: the schema takes the rules and ``keep``, and the merge job passes ``--keep``
    to a ties soup only."""
    config = load_tiny_config()
    config["merging"]["soups"].update(
        stock={"rule": "model_stock"}, trim={"rule": "ties", "keep": 0.1}
    )
    configfile = write_config(tmp_path / "anchored.yaml", config)
    result = snakemake(tmp_path, configfile, "--dry-run", "--printshellcmds")
    assert result.returncode == 0, result.stdout + result.stderr
    merges = [line for line in result.stdout.splitlines() if "lesionsoup merge" in line]
    stock = [line for line in merges if "/stock.safetensors" in line]
    trim = [line for line in merges if "/trim.safetensors" in line]
    assert stock and all("--rule model_stock" in line and "--keep" not in line for line in stock)
    assert trim and all("--rule ties" in line and "--keep 0.1" in line for line in trim)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny study, run to completion once for the rerun tests."""
    workdir = tmp_path_factory.mktemp("study")
    configfile = write_config(workdir / "config.yaml", load_tiny_config())
    result = snakemake(workdir, configfile, "--cores", "2")
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, configfile


def test_tiny_study_produces_every_stage_output(finished):
    workdir, _ = finished
    for dataset in ("IDRID", "DDR", "FGADR", "RETLES", "MAPLES"):
        assert (workdir / "results" / "data" / dataset / "manifest.csv").stat().st_size > 0
        assert (workdir / "results" / "cache" / dataset / "index.csv").exists()
    for combo in ("IDRID", "DDR+IDRID"):
        run = workdir / "results" / "models" / combo / "base" / "seed0"
        assert (run / "last.safetensors").exists() and (run / "curves.png").exists()
    assert list((workdir / "logs" / "train").rglob("*.log"))
    merged = workdir / "results" / "merged" / "IDRID"
    for method in ("best", "uniform", "greedy", "GoU", "swa-seed0"):  # SWA: one model a run
        assert (merged / f"{method}.safetensors").exists(), method
    assert (merged / "ensemble-top2.json").exists()
    assert (workdir / "results" / "hpo" / "IDRID" / "base" / "best_params.yaml").exists()
    metrics = (workdir / "results" / "metrics.csv").read_text().splitlines()
    methods = {line.split(",")[2] for line in metrics[1:]}
    assert {"single", "best", "uniform", "greedy", "GoU", "swa", "ensemble"} <= methods
    assert (workdir / "results" / "summary.md").stat().st_size > 0
    metric = {line.split(",")[5] for line in metrics[1:]}
    assert "ece" in metric
    assert (workdir / "results" / "report" / "reliability.png").stat().st_size > 0


def test_the_study_records_its_jobs_and_costs_its_models_from_them(finished):
    """Every GPU and training rule leaves Snakemake's benchmark record; costs.csv reads them."""
    workdir, configfile = finished
    records = workdir / "results" / "benchmarks"
    for rule in gpu_rule_blocks():
        assert list((records / rule).rglob("*.tsv")), rule
    header = next(records.rglob("*.tsv")).read_text().splitlines()[0].split("\t")
    assert {"s", "cpu_time", "max_rss"} <= set(header)
    costs = pd.read_csv(workdir / "results" / "costs.csv")
    assert set(costs["source"]) == {"measured"}, costs[costs["source"] != "measured"]
    command = [sys.executable, str(REPO / "benchmarks" / "cost_table.py")]
    command += ["--config", str(configfile), "--results", str(workdir)]
    table = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert table.returncode == 0, table.stderr[-3000:]
    measured = table.stdout.split("| GPU jobs (rule) |")[1].splitlines()[2:]
    rows = [line.strip("|").split("|") for line in measured if line.startswith("|")]
    sources = {cells[0].strip(" *").split(" (")[0]: cells[-1].strip() for cells in rows}
    assert sources == dict.fromkeys([*gpu_rule_blocks(), "all"], "measured"), table.stdout


def test_nothing_the_study_writes_is_readable_by_others(finished):
    """Run under umask 022 (conftest), the default results.mode keeps every photograph,
    cache, model, prediction and log from others: the group reads, the owner writes."""
    workdir, _ = finished
    for folder in ("results", "logs", "resources", "resources/synthetic"):
        assert wrong_modes(workdir / folder, *EXPECTED["group"]) == {}, folder


@pytest.mark.parametrize("mode", ["private", "umask"])
def test_results_mode_reaches_snakemake_and_its_jobs(tmp_path, mode):
    """The demo data's job under each mode; a results folder of a wider, earlier mode is
    narrowed at the start (with a warning), the files in it keep their bits."""
    config = load_tiny_config()
    config["results"] = {"mode": mode}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "old.csv").write_text("x")  # 0755 and 0644 under umask 022
    result = snakemake(
        tmp_path, write_config(tmp_path / "c.yaml", config), "-c1", "resources/synthetic"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for folder in ("logs", "resources"):
        assert wrong_modes(tmp_path / folder, *EXPECTED[mode]) == {}, folder
    narrowed = "results: 0755 -> 0700" in result.stderr
    assert (mode_of(tmp_path / "results"), narrowed) == (
        (0o700, True) if mode == "private" else (0o755, False)
    )
    assert mode_of(tmp_path / "results" / "old.csv") == 0o644


def test_a_model_without_its_record_is_costed_from_its_sidecar_not_retrained(finished, tmp_path):
    """Results written before the benchmark records (or a record deleted): building costs.csv
    runs the costs job alone, and the models behind the missing record say ``sidecar``."""
    workdir = tmp_path / "study"
    shutil.copytree(finished[0], workdir, symlinks=True)
    record = workdir / paths.TRAIN_BENCHMARK.format(combo="IDRID", recipe="base", seed=0)
    record.unlink()
    result = snakemake(workdir, finished[1], "--cores", "2", paths.COSTS)
    assert result.returncode == 0, result.stderr[-5000:]
    assert executed_rules(result) == {"costs": 1}
    costs = pd.read_csv(workdir / paths.COSTS).set_index("model")
    single = paths.run("IDRID", "base", 0) + "/best.safetensors"
    assert costs.loc[single, "source"] == "sidecar"
    assert (costs["source"] == "measured").any()  # the other models keep their records


def test_unchanged_or_touched_config_plans_nothing(finished):
    workdir, configfile = finished
    assert planned_jobs(workdir, configfile) == {}
    configfile.write_text(configfile.read_text() + "\n# a comment changes no value\n")
    assert planned_jobs(workdir, configfile) == {}


#: Jobs downstream of every model: they rerun whenever any model changes.
MATRIX_RULES = {
    "evaluate", "aggregate", "evaluated_models", "costs", "summary", "report_cross_dataset",
    "report_methods", "report_pr_curves", "report_qualitative", "report_reliability",
    "connectivity", "uncertainty", "report_averaging", "report_barriers",
    "size_curve",
}  # fmt: skip


def _upstream(jobs):
    """The planned jobs that are not evaluation or report jobs."""
    return {job for job in jobs if job[0] not in MATRIX_RULES}


def test_changed_dataset_threshold_reruns_only_that_dataset_downstream(finished, tmp_path):
    workdir, _ = finished
    config = load_tiny_config()
    config["datasets"]["DDR"]["mask_threshold"] = 200
    jobs = planned_jobs(workdir, write_config(tmp_path / "c.yaml", config))
    assert _upstream(jobs) == {
        ("preprocess", "dataset=DDR"),
        ("annotation_style", ""),
        ("warmup", "combo=DDR+IDRID"),
        ("train", "combo=DDR+IDRID, recipe=base, seed=0"),
    }
    evaluated = {job[1] for job in jobs if job[0] == "evaluate"}
    assert evaluated and all("DDR+IDRID" in wildcards for wildcards in evaluated)


def test_changed_training_value_reruns_only_its_trainings(finished, tmp_path):
    workdir, _ = finished
    config = load_tiny_config()
    config["merging"]["swa"]["settings"]["steps"] = 3
    jobs = planned_jobs(workdir, write_config(tmp_path / "c.yaml", config))
    assert _upstream(jobs) == {
        ("train", "combo=IDRID, recipe=swa-base, seed=0"),
        ("merge", "combo=IDRID, method=swa-seed0"),  # the SWA model of the one SWA run
    }
    evaluated = {job[1] for job in jobs if job[0] == "evaluate"}
    assert evaluated == {"model=merged/IDRID/swa-seed0"}  # one job a model, every test set


def test_added_combination_plans_only_new_jobs(finished, tmp_path):
    workdir, _ = finished
    config = load_tiny_config()
    config["training"]["combinations"].append("FGADR")
    jobs = planned_jobs(workdir, write_config(tmp_path / "c.yaml", config))
    assert _upstream(jobs) == {
        ("warmup", "combo=FGADR"),
        ("train", "combo=FGADR, recipe=base, seed=0"),
    }
    evaluated = {job[1] for job in jobs if job[0] == "evaluate"}
    assert evaluated == {"model=models/FGADR/base/seed0/best"}
