"""export: self-contained model folders that predict accepts, with a model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_toy_cache
from safetensors.torch import save_file
from support.permissions import EXPECTED, wrong_modes
from support.predict import read_png, rendered, save_random_model, write_photograph

from lesionsoup.cli import main
from lesionsoup.core.checkpoint import CheckpointError
from lesionsoup.deploy.export import export_model
from lesionsoup.deploy.models import EXPORT_FILE, model_info
from lesionsoup.deploy.predict import PredictOptions, predict_photographs
from lesionsoup.inference.predictor import write_ensemble

TRAINING = {
    "combination": "DDR+IDRID",
    "datasets": ["DDR", "IDRID"],
    "step": 40,
    "samples_seen": 320,
    "hyperparameters": {"patch_size": 64, "lr": 0.001, "batch_size": 8, "schedule": "cosine"},
    "validation": {"step": 40, "score": 0.4321, "EX": 0.61, "HE": 0.2542},
}
QUIET = PredictOptions(progress=False)


@pytest.fixture
def photographs(tmp_path) -> Path:
    for seed, shape in enumerate(((181, 203), (150, 150))):
        write_photograph(tmp_path / "photos" / f"p{seed}.png", rendered(seed, *shape).image)
    return tmp_path / "photos"


def _probabilities(model: Path, photographs: Path, out: Path, size: int | None = None):
    options = PredictOptions(size=size, progress=False, overlay=False)
    predict_photographs(model, [photographs], out, options)
    return {path.relative_to(out): read_png(path) for path in sorted(out.rglob("*.png"))}


def _assert_same(first: dict, second: dict) -> None:
    assert first.keys() == second.keys() and first
    for name in first:
        assert np.array_equal(first[name], second[name]), name


def test_exported_checkpoint_round_trips_through_predict(tmp_path, photographs):
    model = save_random_model(tmp_path / "run" / "best.safetensors", **TRAINING)
    export_model(model, tmp_path / "export", size=96)
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "README.md",
        EXPORT_FILE,
        "model.json",
        "model.safetensors",
    ]
    direct = _probabilities(model, photographs, tmp_path / "direct", size=96)
    shutil.rmtree(tmp_path / "run")  # the folder must not need its source
    _assert_same(direct, _probabilities(tmp_path / "export", photographs, tmp_path / "via"))
    recorded = json.loads((tmp_path / "via" / "predict.json").read_text())
    assert recorded["size"] == 96


def test_exported_ensemble_copies_every_member(tmp_path, photographs):
    members = [save_random_model(tmp_path / "m" / f"s{i}.safetensors", seed=i) for i in range(2)]
    ensemble = tmp_path / "m" / "ensemble.json"
    write_ensemble(ensemble, members, {"selection": "top-2", **TRAINING}, weights=[1, 3])
    direct = _probabilities(ensemble, photographs, tmp_path / "direct", size=64)
    export_model(ensemble, tmp_path / "export", size=64)
    shutil.rmtree(tmp_path / "m")
    info = model_info(tmp_path / "export")
    assert info.method == "ensemble"
    assert info.weights == (0.25, 0.75)
    assert [p.name for p in info.members] == ["member_00.safetensors", "member_01.safetensors"]
    assert all(p.is_relative_to(tmp_path / "export") for p in info.members)
    _assert_same(direct, _probabilities(tmp_path / "export", photographs, tmp_path / "via"))
    card = (tmp_path / "export" / "README.md").read_text()
    assert "ensemble of 2 models" in card and "top-2" in card and "0.7500" in card


def test_model_card_describes_data_method_scores_and_limits(tmp_path):
    model = save_random_model(tmp_path / "best.safetensors", **TRAINING)
    metrics = tmp_path / "metrics.csv"
    rows = [
        (str(model), "DDR+IDRID", "single", "FGADR", "EX", "ap", 0.5123),
        (str(model), "DDR+IDRID", "single", "FGADR", "EX", "dice", 0.4),
        ("other.safetensors", "DDR", "single", "FGADR", "EX", "ap", 0.9876),
    ]
    columns = ["model", "train_combo", "method", "test_dataset", "lesion", "metric", "value"]
    pd.DataFrame(rows, columns=columns).to_csv(metrics, index=False)
    cache = write_toy_cache(tmp_path / "cache" / "DDR", "DDR", size=64)
    export_model(model, tmp_path / "export", metrics_csv=metrics, caches=[cache])
    card = (tmp_path / "export" / "README.md").read_text()
    for expected in (
        "DDR+IDRID",  # combination
        "| DDR | 2 | 4 | 2 |",  # image counts per split (test, train, valid)
        "Single model: 40 steps",
        "0.4321",  # validation score
        "| FGADR | EX | 0.5123 | 0.4000 |",  # test metrics of this model only
        "not a medical device",
        "longer side is **64 px**",  # the resolution, from the cache
        "EX (hard exudates)",
    ):
        assert expected in card, expected
    assert "0.9876" not in card
    exported = json.loads((tmp_path / "export" / EXPORT_FILE).read_text())
    assert exported["cache_size"] == 64 and exported["method"] == "single"
    assert set(exported["sha256"]) == {"model.safetensors", "model.json"}


def test_model_card_of_a_soup_lists_its_rule_and_ingredients(tmp_path):
    soup = {
        "rule": "greedy",
        "bn_policy": "average",
        "ingredients": ["runs/a.safetensors", "runs/b.safetensors"],
        "weights": {"runs/a.safetensors": 1.0, "runs/b.safetensors": 0.0},
        "validation": {"selection_score": 0.375},
    }
    model = save_random_model(tmp_path / "soup.safetensors", **soup)
    export_model(model, tmp_path / "export", size=64)
    card = (tmp_path / "export" / "README.md").read_text()
    assert "Method: **soup**" in card
    assert "rule `greedy`, BatchNorm policy `average`, 1 of 2 ingredients kept" in card
    assert "| runs/b.safetensors | 0.0000 |" in card
    assert "0.3750" in card


def test_model_card_of_a_part_soup_names_the_part_anchor_and_starts(tmp_path):
    paths = ["runs/a.safetensors", "runs/b.safetensors", "runs/c.safetensors"]
    soup = {
        "rule": "uniform",
        "bn_policy": "average",
        "ingredients": paths,
        "weights": dict(zip(paths, (0.5, 0.5, 0.0), strict=True)),
        "part": "encoder",
        "anchor": "runs/b.safetensors",
        "starts": dict(zip(paths, ("shared:x", "independent", "independent"), strict=True)),
    }
    model = save_random_model(tmp_path / "soup.safetensors", **soup)
    export_model(model, tmp_path / "export", size=64)
    card = (tmp_path / "export" / "README.md").read_text()
    assert "Averages the encoder; the rest is the anchor's, `runs/b.safetensors`" in card
    assert "Starts of the kept ingredients: independent (1), shared:x (1)" in card


def test_resolution_comes_from_the_option_the_metadata_or_the_caches_never_a_guess(tmp_path):
    recorded = save_random_model(tmp_path / "recorded.safetensors", cache_size=320)
    export_model(recorded, tmp_path / "a")
    assert model_info(tmp_path / "a").cache_size == 320
    export_model(recorded, tmp_path / "b", size=128)
    assert model_info(tmp_path / "b").cache_size == 128
    bare = save_random_model(tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match="bare.safetensors: records no 'cache_size'"):
        export_model(bare, tmp_path / "c")
    assert not (tmp_path / "c").exists()
    caches = [write_toy_cache(tmp_path / "cache" / name, name, size=64) for name in ("A", "B")]
    export_model(bare, tmp_path / "d", caches=caches)
    assert model_info(tmp_path / "d").cache_size == 64
    odd = write_toy_cache(tmp_path / "cache" / "C", "C", size=96)
    with pytest.raises(ValueError, match="caches differ in size"):
        export_model(bare, tmp_path / "e", caches=[caches[0], odd])


def test_export_refuses_foreign_models_and_folders(tmp_path):
    model = save_random_model(tmp_path / "model.safetensors", cache_size=64)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="busy: exists and is not an exported model folder"):
        export_model(model, tmp_path / "busy")
    assert (tmp_path / "busy" / "thesis.tex").read_text() == "precious"
    export_model(model, tmp_path / "again", size=64)
    export_model(model, tmp_path / "again", size=96)  # an earlier export is replaced
    assert model_info(tmp_path / "again").cache_size == 96
    assert not list(tmp_path.glob(".*partial"))
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="foreign.safetensors: not a lesionsoup checkpoint"):
        export_model(foreign, tmp_path / "x")
    with pytest.raises(CheckpointError, match="missing.safetensors: model file not found"):
        export_model(tmp_path / "missing.safetensors", tmp_path / "x")
    with pytest.raises(ValueError, match="metrics.csv: no rows for model"):
        empty = tmp_path / "metrics.csv"
        empty.write_text("model,test_dataset,lesion,metric,value\nz,A,EX,ap,0.1\n")
        export_model(model, tmp_path / "y", metrics_csv=empty)
    assert not (tmp_path / "y").exists()


def test_export_command(tmp_path):
    model = save_random_model(tmp_path / "model.safetensors", **TRAINING)
    assert main(["export", str(model), "-o", str(tmp_path / "out"), "--size", "128"]) == 0
    assert model_info(tmp_path / "out").cache_size == 128
    assert wrong_modes(tmp_path / "out", *EXPECTED["group"]) == {}  # under umask 022
    assert main(["export", str(tmp_path / "nothing.json"), "-o", str(tmp_path / "o2")]) == 1
