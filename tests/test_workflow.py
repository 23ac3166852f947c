"""The workflow on the tiny config: validation, a real run, and rerun semantics."""

from __future__ import annotations

import pytest

from workflow import load_tiny_config, planned_jobs, snakemake, write_config


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda c: c["preprocess"].update(sise=256), "sise"),
        (lambda c: c["preprocess"].update(size="big"), "size"),
        (lambda c: c["datasets"]["RETLES"].update(value_127="maybe"), "value_127"),
        (lambda c: c["training"]["recipes"]["base"].update(learning_rate=0.1), "learning_rate"),
        (lambda c: c["training"].update(combinations=["IDRID+FOO"]), "FOO"),
    ],
)
def test_bad_config_stops_before_any_job_naming_the_key(tmp_path, change, named):
    config = load_tiny_config()
    change(config)
    result = snakemake(tmp_path, write_config(tmp_path / "bad.yaml", config), "--cores", "1")
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


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


def test_unchanged_or_touched_config_plans_nothing(finished):
    workdir, configfile = finished
    assert planned_jobs(workdir, configfile) == {}
    configfile.write_text(configfile.read_text() + "\n# a comment changes no value\n")
    assert planned_jobs(workdir, configfile) == {}


def test_changed_dataset_threshold_reruns_only_that_dataset_downstream(finished, tmp_path):
    workdir, _ = finished
    config = load_tiny_config()
    config["datasets"]["DDR"]["mask_threshold"] = 200
    jobs = planned_jobs(workdir, write_config(tmp_path / "c.yaml", config))
    assert jobs == {
        ("preprocess", "dataset=DDR"): 1,
        ("warmup", "combo=DDR+IDRID"): 1,
        ("train", "combo=DDR+IDRID, recipe=base, seed=0"): 1,
    }


def test_changed_recipe_value_reruns_only_its_trainings(finished, tmp_path):
    workdir, _ = finished
    config = load_tiny_config()
    config["training"]["recipes"]["base"]["lr"] = 0.002
    jobs = planned_jobs(workdir, write_config(tmp_path / "c.yaml", config))
    assert jobs == {
        ("train", "combo=IDRID, recipe=base, seed=0"): 1,
        ("train", "combo=DDR+IDRID, recipe=base, seed=0"): 1,
    }


def test_added_combination_plans_only_new_jobs(finished, tmp_path):
    workdir, _ = finished
    config = load_tiny_config()
    config["training"]["combinations"].append("FGADR")
    jobs = planned_jobs(workdir, write_config(tmp_path / "c.yaml", config))
    assert jobs == {
        ("warmup", "combo=FGADR"): 1,
        ("train", "combo=FGADR, recipe=base, seed=0"): 1,
    }
