"""The workflow's pretrained encoder weights: fetched once where Snakemake runs (a local rule),
read by every training job from the project cache, without network."""

from __future__ import annotations

import json

import torch
from conftest import write_pretrained_cache
from support.network_guard import guarded_environment
from support.workflow import executed_rules, load_tiny_config, planned_jobs, snakemake, write_config

from lesionsoup.core import paths
from lesionsoup.core.checkpoint import load_checkpoint
from lesionsoup.core.pretrained import cached_file, hub_cache, source_of

#: A tuned recipe's final run: the warm-up, both hpo trials and the training run before it.
TARGET = "results/models/IDRID/base/seed0/best.safetensors"
TRAINING_COMMANDS = ("lesionsoup warmup", "lesionsoup train", "lesionsoup hpo-trial")


def test_without_pretrained_weights_nothing_is_fetched(tmp_path):
    config = load_tiny_config()
    assert config["model"]["encoder_weights"] is None
    planned = {
        rule for rule, _ in planned_jobs(tmp_path, write_config(tmp_path / "t.yaml", config))
    }
    assert "fetch_weights" not in planned and "warmup" in planned


def test_weights_are_fetched_once_locally_and_read_offline_by_every_training_job(
    tmp_path, monkeypatch
):
    """The project cache already holds the weights (fetched by an earlier study, here the fake
    cache): the fetch rule records them without network, and no process, Snakemake and the
    jobs included, resolves a name or opens an internet connection (``network_guard``)."""
    config = load_tiny_config()
    config["model"]["encoder_weights"] = "imagenet"
    configfile = write_config(tmp_path / "imagenet.yaml", config)
    workdir = tmp_path / "run"
    state = write_pretrained_cache(workdir / paths.PRETRAINED, "resnet18")
    attempts = tmp_path / "network.log"
    for key, value in guarded_environment(tmp_path / "guard", attempts).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))  # nothing to find elsewhere
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    result = snakemake(workdir, configfile, "--cores", "2", "--printshellcmds", TARGET)
    assert result.returncode == 0, result.stderr[-6000:]
    assert not attempts.exists(), attempts.read_text()
    executed = executed_rules(result)
    assert executed["fetch_weights"] == 1 and executed["warmup"] == 1
    assert executed["hpo_trial"] == 2 and executed["train"] == 1
    assert "localrule fetch_weights:" in result.stderr  # where Snakemake runs, not a job
    lines = result.stderr.splitlines()
    commands = [line for line in lines if any(name in line for name in TRAINING_COMMANDS)]
    assert len(commands) == 4
    assert all(f"--pretrained-cache {paths.PRETRAINED} " in line for line in commands)

    record_path = workdir / paths.pretrained_record(config["model"])
    record = json.loads(record_path.read_text())
    source = source_of("resnet18", "imagenet")
    weights = cached_file(source, hub_cache(workdir / paths.PRETRAINED))
    assert record["repo_id"] == source.repo_id and record["commit"] == source.revision
    assert record["bytes"] == weights.stat().st_size
    init = load_checkpoint(workdir / "results" / "models" / "IDRID" / "init.safetensors")[0]
    kernels = [
        name for name, tensor in state.items() if f"encoder.{name}" in init and tensor.ndim == 4
    ]
    assert kernels
    for name in kernels:  # the warm-up freezes the encoder the cache holds
        assert torch.equal(init[f"encoder.{name}"], state[name]), name

    # fetched again into another record (a changed file would retrain everything without
    # `ancient`; Snakemake checksums small inputs, so an identical rewrite is no change)
    record_path.write_text(json.dumps({**record, "cache": "elsewhere"}))
    again = snakemake(workdir, configfile, "--dry-run", TARGET)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout
