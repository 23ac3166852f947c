"""Training: reproducibility, exact resume, finished runs never retrained."""

from __future__ import annotations

import pytest
import torch

from lesionsoup import train as train_module
from lesionsoup.cache import Cache
from lesionsoup.checkpoint import load_checkpoint, load_metadata
from lesionsoup.specs import ModelSpec, TrainSettings
from lesionsoup.train import publish_init, train_run

SPEC = ModelSpec(
    encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4)
)
SETTINGS = TrainSettings(
    steps=8,
    batch_size=2,
    patch_size=32,
    lr=2e-3,
    warmup_steps=2,
    validate_every=4,
    state_every=3,
    augmentation="light",
    bins=1030 * 2,
)


@pytest.fixture
def caches(toy_caches):
    return {name: Cache(path) for name, path in toy_caches.items()}


@pytest.fixture
def init(tmp_path, caches):
    settings = TrainSettings(**{**SETTINGS.as_dict(), "steps": 2, "freeze_encoder": True})
    train_run(tmp_path / "warmup", caches, SPEC, settings, threads=1, workers=0, progress_bar=False)
    path = tmp_path / "init.safetensors"
    publish_init(tmp_path / "warmup", path)
    return path


def _weights(run_dir):
    return load_checkpoint(run_dir / "last.safetensors")[0]


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_same_seed_gives_identical_weights_and_outputs(tmp_path, caches, init):
    for name in ("a", "b"):
        train_run(tmp_path / name, caches, SPEC, SETTINGS, init=init, workers=0, progress_bar=False)
    _assert_identical(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    other = TrainSettings(**{**SETTINGS.as_dict(), "seed": 1})
    train_run(tmp_path / "c", caches, SPEC, other, init=init, workers=0, progress_bar=False)
    assert any(
        not torch.equal(x, y)
        for x, y in zip(
            _weights(tmp_path / "a").values(), _weights(tmp_path / "c").values(), strict=True
        )
    )
    for output in ("best.safetensors", "best.json", "log.csv", "validation.csv", "curves.png"):
        assert (tmp_path / "a" / output).stat().st_size > 0
    meta = load_metadata(tmp_path / "a" / "last.safetensors")
    assert meta["step"] == 8 and meta["samples_seen"] == 16
    assert meta["init_id"] == load_metadata(init)["init_id"] and meta["parent"] == str(init)
    assert set(meta["validation"]) >= {"score", "EX", "HE", "MA", "CWS"}


def test_killed_run_resumes_to_identical_weights(tmp_path, caches, init, monkeypatch):
    train_run(tmp_path / "whole", caches, SPEC, SETTINGS, init=init, workers=0, progress_bar=False)

    real_loss = train_module.segmentation_loss
    calls = {"n": 0}

    def dying_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # dies inside step 6; the last state was saved after step 3
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "segmentation_loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        train_run(
            tmp_path / "killed", caches, SPEC, SETTINGS, init=init, workers=0, progress_bar=False
        )
    assert not (tmp_path / "killed" / "last.safetensors").exists()  # nothing published
    monkeypatch.setattr(train_module, "segmentation_loss", real_loss)
    meta = train_run(
        tmp_path / "killed", caches, SPEC, SETTINGS, init=init, workers=0, progress_bar=False
    )
    assert meta["step"] == SETTINGS.steps
    _assert_identical(_weights(tmp_path / "whole"), _weights(tmp_path / "killed"))
    steps = (tmp_path / "killed" / "log.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in steps] == list(range(1, SETTINGS.steps + 1))


def test_finished_run_is_never_retrained(tmp_path, caches, init, monkeypatch):
    train_run(tmp_path / "run", caches, SPEC, SETTINGS, init=init, workers=0, progress_bar=False)
    before = (tmp_path / "run" / "last.safetensors").stat().st_mtime_ns

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(train_module, "segmentation_loss", must_not_train)
    train_run(tmp_path / "run", caches, SPEC, SETTINGS, init=init, workers=0, progress_bar=False)
    assert (tmp_path / "run" / "last.safetensors").stat().st_mtime_ns == before


def test_init_with_another_architecture_is_refused(tmp_path, caches, init):
    other = ModelSpec(**{**SPEC.__dict__, "decoder_channels": (8, 8, 8)})
    with pytest.raises(ValueError, match="architecture"):
        train_run(tmp_path / "x", caches, other, SETTINGS, init=init, workers=0, progress_bar=False)


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainSettings.from_dict({"learning_rate": 0.1})


def test_triangular_run_snapshots_at_every_learning_rate_minimum(tmp_path, caches, init):
    settings = TrainSettings(
        **{**SETTINGS.as_dict(), "schedule": "triangular", "cycle_steps": 4, "min_lr": 1e-6}
    )
    train_run(tmp_path / "fgg", caches, SPEC, settings, init=init, workers=0, progress_bar=False)
    snapshots = sorted(p.name for p in (tmp_path / "fgg" / "snapshots").glob("*.safetensors"))
    # minima at updates 2 and 6 (0-based): snapshots after 3 and 7 completed steps
    assert snapshots == ["step0000003.safetensors", "step0000007.safetensors"]
    meta = load_metadata(tmp_path / "fgg" / "snapshots" / snapshots[0])
    assert meta["step"] == 3 and meta["snapshot"] is True
    assert meta["init_id"] == load_metadata(init)["init_id"]
