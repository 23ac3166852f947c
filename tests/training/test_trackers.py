"""Live trackers: TensorBoard's and W&B's scalars equal a run's log.csv and validation.csv, across a
resume; a tracker without its package is an immediate error naming the extra."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
from conftest import TINY_SETTINGS, TINY_SPEC, quiet_options
from support.trackers import (
    float32,
    logged_scalars,
    same,
    tensorboard_scalars,
    wandb_history,
    wandb_runs,
    wandb_scalars,
)
from support.workflow import executed_rules, load_tiny_config, snakemake, write_config
from test_train import _die_in_step

from lesionsoup.training import loop
from lesionsoup.training.run import train_run
from lesionsoup.training.trackers import WANDB_ID, check_trackers

BOTH = ("tensorboard", "wandb")


def test_unknown_tracker_and_missing_package_are_named(monkeypatch):
    with pytest.raises(ValueError, match="unknown tracker 'mlflow'"):
        check_trackers(["mlflow"])
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    assert check_trackers(["tensorboard"]) == ("tensorboard",)
    with pytest.raises(ValueError, match=r"pip install 'lesionsoup\[wandb\]'"):
        check_trackers(BOTH)


def test_tracked_scalars_equal_the_logs_after_a_kill_and_resume(tmp_path, caches, monkeypatch):
    """Killed in step 6 (state saved after step 3, rows to 4 tracked), the run resumes at 3:
    TensorBoard shows each step once with the published logs' values; W&B continues its run
    (same id) in a second offline run, whose steps start after the state's."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "run"
    options = quiet_options(trackers=BOTH)
    real_loss = _die_in_step(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        train_run(run, caches, TINY_SPEC, TINY_SETTINGS, options)
    first_id = (run / "wandb" / WANDB_ID).read_text()
    assert 4 in tensorboard_scalars(run / "tensorboard")[0]["train/loss"]  # tracked past the state
    monkeypatch.setattr(loop, "segmentation_loss", real_loss)
    train_run(run, caches, TINY_SPEC, TINY_SETTINGS, options)

    logged = logged_scalars(run)
    assert sorted(logged["train/loss"]) == list(range(1, 9))
    assert {"validation/score", "validation/EX", "train/lr", "train/patches_per_s"} <= set(logged)
    values, steps = tensorboard_scalars(run / "tensorboard")
    assert same(values, float32(logged))
    assert all(order == sorted(set(order)) for order in steps.values())  # each step once
    first, second = wandb_runs(run)
    assert (run / "wandb" / WANDB_ID).read_text() == first_id
    assert first_id.strip() in second.name
    assert [step for step, _ in wandb_history(second)][0] == 4
    assert same(wandb_scalars(run), logged)


def test_a_fresh_start_replaces_an_earlier_attempts_trackers(tmp_path, caches, monkeypatch):
    """A run that starts at step 0 again (here: its state removed) tracks afresh: old events
    and the old W&B run are gone."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "run"
    settings = dataclasses.replace(TINY_SETTINGS, steps=4)
    real_loss = _die_in_step(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train_run(run, caches, TINY_SPEC, settings, quiet_options(trackers=BOTH))
    old_id = (run / "wandb" / WANDB_ID).read_text()
    (run / ".work" / "state.safetensors").unlink()
    monkeypatch.setattr(loop, "segmentation_loss", real_loss)
    train_run(run, caches, TINY_SPEC, settings, quiet_options(trackers=BOTH))
    assert len(wandb_runs(run)) == 1 and (run / "wandb" / WANDB_ID).read_text() != old_id
    assert len(list((run / "tensorboard").iterdir())) == 1
    logged = logged_scalars(run)
    assert same(tensorboard_scalars(run / "tensorboard")[0], float32(logged))
    assert same(wandb_scalars(run), logged)


TRAINING = "results/models/IDRID/plain/seed0"  # a recipe not tuned: no other trial to wait for
TRIAL = "results/hpo/IDRID/base/trials/0"


def test_tiny_study_with_trackers_tracks_warmups_trainings_and_trials(tmp_path):
    """The acceptance check: with ``training.trackers: [tensorboard, wandb]``, a warm-up, a
    training and an HPO trial of the tiny study leave event files and an offline W&B run whose
    scalars equal their logs'; turning the trackers off then reruns nothing."""
    config = load_tiny_config()
    config["training"]["trackers"] = list(BOTH)
    config["training"]["recipes"]["plain"] = config["training"]["recipes"]["base"]
    configfile = write_config(tmp_path / "config.yaml", config)
    workdir = tmp_path / "study"
    targets = (f"{TRAINING}/last.safetensors", TRIAL)
    result = snakemake(workdir, configfile, "--cores", "2", *targets)
    assert result.returncode == 0, result.stderr[-5000:]
    assert executed_rules(result)["warmup"] == 1
    (trial,) = (workdir / "results" / "hpo" / "IDRID" / "base" / "runs").glob("*/trial*")
    for run in (workdir / TRAINING, trial):
        logged = logged_scalars(run)
        assert same(tensorboard_scalars(run / "tensorboard")[0], float32(logged)), run
        assert len(wandb_runs(run)) == 1 and same(wandb_scalars(run), logged), run
    warmup = workdir / "results" / "models" / "IDRID" / "init.trackers"  # its run folder is gone
    tracked = wandb_scalars(warmup)
    assert sorted(tracked["train/loss"]) == [1, 2]  # tiny.yaml's warm-up steps
    assert same(tensorboard_scalars(warmup / "tensorboard")[0], float32(tracked))

    config["training"]["trackers"] = []
    rerun = snakemake(workdir, write_config(configfile, config), "--cores", "2", *targets)
    assert rerun.returncode == 0, rerun.stderr[-5000:]
    assert not executed_rules(rerun), executed_rules(rerun)


def test_on_two_devices_rank_zero_alone_tracks(tmp_path, caches):
    """Two gloo ranks train the run: one event file (one writer), equal to the logs."""
    settings = dataclasses.replace(TINY_SETTINGS, steps=4, validate_every=2, devices=2)
    run = tmp_path / "run"
    train_run(run, caches, TINY_SPEC, settings, quiet_options(trackers=("tensorboard",)))
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    values, _ = tensorboard_scalars(run / "tensorboard")
    assert same(values, float32(logged_scalars(run)))


def test_an_unknown_tracker_in_the_config_stops_the_workflow_naming_it(tmp_path):
    config = load_tiny_config()
    config["training"]["trackers"] = ["tensorboard", "mlflow"]
    result = snakemake(tmp_path, write_config(tmp_path / "bad.yaml", config), "--dry-run")
    assert result.returncode != 0
    assert "training.trackers" in result.stdout + result.stderr
    assert "mlflow" in result.stdout + result.stderr
