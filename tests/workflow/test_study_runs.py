"""config/paper.yaml, config/fissionfusion.yaml and config/averaging.yaml run end to end
through Snakemake.

The test suite's own overlay scales down only sizes and lengths: three of the five datasets
(the configs say to remove the datasets one does not have), tiny native trees, 64-pixel
caches, a small ResNet-18 U-Net whose "imagenet" encoder comes from the project cache the
test writes (the fetch_weights rule records it; no process reaches the hub), 32-pixel
patches, one or two epochs, two HPO trials, a few BatchNorm patches. Every other setting
(starts, labels, presets, masks, Dice, monitored score, grids, soups, SWA, FGG, ensembles,
figures) is the config's own, and every rule of the DAG runs.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import write_pretrained_cache
from support.native_trees import ddr_tree, fgadr_tree, idrid_tree
from support.workflow import REPO, executed_rules, planned_jobs, snakemake, write_config

from lesionsoup.core import paths
from lesionsoup.core.checkpoint import load_metadata

FIVE = "DDR+FGADR+IDRID+MAPLES+RETLES"
KEPT = ("DDR", "FGADR", "IDRID")
COMBO = "+".join(KEPT)
#: The sizes and lengths the overlay sets, by key path; nothing else changes.
SCALED: dict[str, Any] = {
    "preprocess.size": 64,
    "preprocess.threads": 1,
    "model.encoder": "resnet18",
    "model.encoder_depth": 3,
    "model.decoder_channels": [16, 8, 4],
    "training.threads": 1,
    "training.defaults.patch_size": 32,
    "training.defaults.batch_size": 2,
    # two devices are tests/training/test_distributed.py's, not 2 cores'
    "training.defaults.devices": 1,
    "training.defaults.epochs": 1,
    "training.defaults.validate_every_epochs": 1,
    "training.defaults.compile": False,
    "evaluation.threads": 1,
    "hpo.n_trials": 2,
    "hpo.startup_trials": 1,
    "merging.bn_recompute.patches": 4,
    "merging.bn_recompute.batch_size": 2,
    "report.qualitative.images": 1,
    "report.connectivity.points": 3,
}


def _set(config: dict, dotted: str, value: Any) -> None:
    """Replace the value at ``dotted``; KeyError where the config does not set it."""
    *parents, key = dotted.split(".")
    for parent in parents:
        config = config[parent]
    if key not in config:
        raise KeyError(dotted)
    config[key] = value


def _renamed(value: Any) -> Any:
    """The five-dataset combination, where the config names it, becomes the kept one."""
    if isinstance(value, str):
        return value.replace(FIVE, COMBO)
    if isinstance(value, list):
        return [_renamed(item) for item in value]
    if isinstance(value, dict):
        return {key: _renamed(item) for key, item in value.items()}
    return value


def scaled_down(study: Path, roots: dict[str, str]) -> dict[str, Any]:
    config = _renamed(yaml.safe_load(study.read_text()))
    config["datasets"] = {
        name: settings
        for name, settings in config["datasets"].items()
        if name in KEPT or settings.get("of") in KEPT  # subsets of a kept dataset too
    }
    for name, settings in config["datasets"].items():
        if "of" not in settings:
            settings["root"] = roots[name]
    for dotted, value in SCALED.items():  # every section the config has (FissionFusion: no HPO)
        if dotted.split(".", 1)[0] in config:
            _set(config, dotted, value)
    for section in ("warmup", *(f"recipes.{name}" for name in config["training"]["recipes"])):
        for key in ("epochs", "validate_every_epochs"):
            with contextlib.suppress(KeyError):
                _set(config, f"training.{section}.{key}", 1)
    for stage, epochs in (("swa", 2), ("fgg", 2)):
        if stage in config["merging"]:
            settings = config["merging"][stage]["settings"]
            settings.update(epochs=epochs, cycle_epochs=1)
            if "warmup_steps" in settings:
                settings["warmup_steps"] = 1
    return config


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, str]:
    """Three native trees with enough images that every split, validation too, has some."""
    base = tmp_path_factory.mktemp("roots")
    lesions = ("MA", "EX", "HE", "SE")
    idrid = {
        "train": {f"IDRiD_{i:02d}": lesions for i in range(1, 9)},
        "test": {f"IDRiD_{i:02d}": lesions for i in range(9, 12)},
    }
    ddr = {
        split: {f"{split}{i}": ("EX", "MA") for i in range(3)}
        for split in ("train", "valid", "test")
    }
    fgadr = {f"{i:04d}_1": ("EX", "HE") for i in range(12)}
    trees = {
        "IDRID": idrid_tree(base / "IDRID", idrid),
        "DDR": ddr_tree(base / "DDR", ddr),
        "FGADR": fgadr_tree(base / "FGADR", fgadr),
    }
    return {name: str(root) for name, root in trees.items()}


@pytest.fixture
def offline_weights(tmp_path, monkeypatch):
    """No hub for any process, and an empty Hugging Face cache: the jobs find resnet18's
    "imagenet" encoder in the project cache ``run_study`` writes, or nowhere."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run_study(study: Path, roots, tmp_path, timeout: int = 1500) -> tuple[Path, Counter]:
    """The scaled-down study run to completion; the rules its dry run planned, per job."""
    workdir = tmp_path / "run"
    write_pretrained_cache(workdir / paths.PRETRAINED)  # as an earlier fetch left it
    configfile = write_config(tmp_path / f"{study.stem}.yaml", scaled_down(study, roots))
    planned = Counter(rule for rule, _ in planned_jobs(workdir, configfile).elements())
    result = snakemake(workdir, configfile, "--cores", "2", timeout=timeout)
    assert result.returncode == 0, result.stderr[-6000:]
    executed = executed_rules(result)
    del executed["all"]  # the target rule, which a dry run does not list
    assert executed == planned  # every planned job of every rule ran
    return workdir, executed


@pytest.mark.study  # about 130 jobs: 10-13 minutes on 2 cores
def test_the_paper_study_runs_every_rule_of_its_dag(roots, offline_weights, tmp_path):
    workdir, executed = run_study(REPO / "config" / "paper.yaml", roots, tmp_path)
    assert "warmup" not in executed and executed["hpo_trial"] == 2
    models = workdir / "results" / "models"
    for combo in ("DDR", "FGADR", "IDRID", COMBO):
        for seed in (0, 1, 2):
            meta = load_metadata(models / combo / "base" / f"seed{seed}" / "last.safetensors")
            assert meta["start"] == "independent" and "init_id" not in meta
            assert meta["hyperparameters"]["epochs"] == 1 and meta["precision"] == "fp32"
            assert meta["validation"]["score"] == meta["validation"]["miou"]
    merged = workdir / "results" / "merged" / COMBO
    for seed in (0, 1, 2):  # one SWA model per run, of that run's snapshots only
        ingredients = load_metadata(merged / f"swa-seed{seed}.safetensors")["ingredients"]
        assert ingredients and all(f"/swa-base/seed{seed}/" in path for path in ingredients)
    for part in ("encoder", "decoder", "full"):
        meta = load_metadata(merged / f"uniform-{part}.safetensors")
        assert meta["part"] == part
    metrics = pd.read_csv(workdir / "results" / "metrics.csv")
    assert {"uniform-encoder", "greedy-decoder", "swa", "ensemble"} <= set(metrics["method"])
    conventions = json.loads((workdir / "results" / "metrics.conventions.json").read_text())
    assert conventions["labels"] == "priority"


@pytest.mark.study  # 48 grid runs: 10-13 minutes on 2 cores
def test_the_fissionfusion_study_runs_every_rule_of_its_dag(roots, offline_weights, tmp_path):
    workdir, executed = run_study(REPO / "config" / "fissionfusion.yaml", roots, tmp_path)
    assert executed["warmup"] == 1  # one shared initialisation (their linear probing)
    grid = workdir / "results" / "models" / COMBO
    runs = [path for path in grid.glob("grid-*/seed*/last.safetensors")]
    assert len(runs) == 48
    for path in runs:
        meta = load_metadata(path)
        assert meta["start"] == "shared" and meta["hyperparameters"]["min_lr"] == 0.0
    assert len(list(grid.glob("fgg-*/seed0/snapshots/*.safetensors"))) >= 8


@pytest.mark.study  # about 400 jobs: 15-25 minutes on 2 cores
def test_the_averaging_study_runs_every_rule_of_its_dag(roots, offline_weights, tmp_path):
    workdir, executed = run_study(REPO / "config" / "averaging.yaml", roots, tmp_path, 3600)
    assert executed["warmup"] == 3  # the shared start of each training-set fraction
    models = workdir / "results" / "models"
    for combo in ("DDR25", "DDR50", "DDR"):
        for recipe in ("shared", "independent"):
            for seed in (0, 1, 2):
                meta = load_metadata(models / combo / recipe / f"seed{seed}" / "best.safetensors")
                assert meta["start"] == recipe
    manifests = {
        name: pd.read_csv(workdir / "results" / "data" / name / "manifest.csv")
        for name in ("DDR25", "DDR50", "DDR")
    }
    trained = {name: set(m.loc[m["split"] == "train", "image_id"]) for name, m in manifests.items()}
    assert trained["DDR25"] <= trained["DDR50"] <= trained["DDR"]
    verdicts = pd.read_csv(workdir / "results" / "report" / "averaging.csv")
    assert set(verdicts["start"]) == {"shared", "independent"}
    assert set(verdicts["fraction"]) == {0.25, 0.5, 1.0}
    assert set(verdicts["rule"]) == {"uniform", "greedy", "model_stock", "ties", "swa"}
    assert set(verdicts["part"]) == {"full", "encoder", "decoder"}
    assert set(verdicts["bn_policy"]) == {"average", "recompute"}
    assert verdicts["low"].notna().all() and (verdicts["low"] <= verdicts["high"]).all()
    barriers = pd.read_csv(workdir / "results" / "report" / "barriers.csv")
    assert len(barriers) == 6 * 2  # (start x part) pairs x BatchNorm policies
    assert (workdir / "results" / "report" / "averaging.png").stat().st_size > 0
