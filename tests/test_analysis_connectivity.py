"""Linear mode connectivity curves between two tiny checkpoints, and the qualitative figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lesionsoup.analysis.connectivity import barrier, connectivity_curve
from lesionsoup.core.checkpoint import load_checkpoint, save_checkpoint
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import ModelSpec
from lesionsoup.data.cache import Cache
from lesionsoup.report.connectivity import plot_connectivity
from lesionsoup.report.qualitative import chosen_images, plot_qualitative
from lesionsoup.training.sampling import ValidationImages
from lesionsoup.training.validation import validate

SPEC = ModelSpec(
    encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4)
)


def checkpoint(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = build_model(SPEC)
    with torch.no_grad():  # BatchNorm statistics that differ between the two models
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    metadata = {"architecture": SPEC.as_dict(), "init_id": "init-0", "wall_seconds": 1.0}
    save_checkpoint(path, model.state_dict(), metadata)
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return checkpoint(tmp_path / "a.safetensors", 0), checkpoint(tmp_path / "b.safetensors", 1)


def score_of(path: Path, caches: dict[str, Cache]) -> float:
    state, _ = load_checkpoint(path)
    model = build_model(SPEC)
    model.load_state_dict(state)
    images = [ValidationImages(cache, "valid", SPEC.lesion_classes) for cache in caches.values()]
    return validate(model, images, SPEC, 1000)["score"]


def test_curve_endpoints_are_the_two_models(
    pair: tuple[Path, Path], toy_caches: dict[str, Path], tmp_path: Path
) -> None:
    caches = {name: Cache(path) for name, path in toy_caches.items()}
    curve = connectivity_curve(*pair, caches, points=3, bn_policy="average")
    assert list(curve["lam"]) == [0.0, 0.5, 1.0]
    assert curve["score"].iloc[0] == pytest.approx(score_of(pair[0], caches), abs=1e-9)
    assert curve["score"].iloc[-1] == pytest.approx(score_of(pair[1], caches), abs=1e-9)
    assert np.isfinite(curve["loss"]).all() and (curve["loss"] > 0).all()
    recomputed = connectivity_curve(
        *pair, caches, points=2, bn_policy="recompute", bn_patches=4, patch_size=32
    )
    # recomputed statistics change the models, so the scores differ from the stored ones
    assert list(recomputed["lam"]) == [0.0, 1.0]
    assert not np.allclose(recomputed["loss"], curve["loss"].iloc[[0, -1]])
    out = tmp_path / "lmc.png"
    plot_connectivity({"average": curve, "recompute": recomputed}, out, "A to B")
    assert out.exists()


def test_barrier_is_the_dip_below_the_chord() -> None:
    curve = pd.DataFrame(
        {"lam": [0.0, 0.5, 1.0], "score": [0.6, 0.3, 0.4], "loss": [1.0, 0.5, 2.0]}
    )
    assert barrier(curve) == pytest.approx(0.5 - 0.3)
    assert barrier(curve, "loss", higher_is_better=False) == 0.0  # below the chord: no barrier
    assert barrier(curve, "loss") == pytest.approx(1.5 - 0.5)


def test_incompatible_pair_is_refused(tmp_path: Path, toy_caches: dict[str, Path]) -> None:
    a = checkpoint(tmp_path / "a.safetensors", 0)
    other = tmp_path / "other.safetensors"
    state, metadata = load_checkpoint(a)
    save_checkpoint(other, state, {**metadata, "init_id": "init-1"})
    caches = {name: Cache(path) for name, path in toy_caches.items()}
    with pytest.raises(ValueError, match="other.safetensors and .*a.safetensors differ in init_id"):
        connectivity_curve(a, other, caches, points=2)


def test_qualitative_figure(
    pair: tuple[Path, Path], toy_caches: dict[str, Path], tmp_path: Path
) -> None:
    cache = Cache(toy_caches["AAA"])
    index = cache.index[cache.index["split"] == "test"]
    totals = index[[f"px_{x}" for x in ("EX", "HE", "MA", "CWS")]].sum(axis=1)
    assert chosen_images(cache, 1) == [index.loc[totals.idxmax(), "image_id"]]
    out = tmp_path / "qualitative.png"
    shown = plot_qualitative(cache, {"A": pair[0], "B": pair[1]}, out, images=2)
    assert len(shown) == 2 and out.exists()
