"""Linear mode connectivity curves between two tiny checkpoints, and the qualitative figure."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support.connectivity import SETTINGS, SPEC, checkpoint
from torch.optim.swa_utils import update_bn

from lesionsoup.analysis.connectivity import barrier, connectivity_curve, recorded_settings
from lesionsoup.analysis.sharpness import checkpoint_sharpness
from lesionsoup.cli import main
from lesionsoup.core.checkpoint import load_checkpoint, save_checkpoint
from lesionsoup.core.merge_rules import BatchNormSample
from lesionsoup.core.model import build_model
from lesionsoup.data.cache import Cache
from lesionsoup.merging.averaging import average_checkpoints
from lesionsoup.merging.batchnorm import recompute_patches
from lesionsoup.report.connectivity import plot_connectivity
from lesionsoup.report.qualitative import chosen_images, plot_qualitative
from lesionsoup.training.sampling import ValidationImages
from lesionsoup.training.validation import validate


def score_of_state(
    state: dict[str, torch.Tensor],
    caches: dict[str, Cache],
    batches: list[torch.Tensor] | None = None,
) -> float:
    """A model's validation score; with ``batches``, after torch's ``update_bn`` over them."""
    model = build_model(SPEC)
    model.load_state_dict(state)
    if batches is not None:
        update_bn(batches, model)
    images = [ValidationImages(cache, "valid", SPEC.lesion_classes) for cache in caches.values()]
    return validate(model, images, SPEC, 1000)["score"]


def score_of(
    path: Path, caches: dict[str, Cache], batches: list[torch.Tensor] | None = None
) -> float:
    return score_of_state(load_checkpoint(path)[0], caches, batches)


def test_curve_endpoints_are_the_two_models(
    pair: tuple[Path, Path], toy_caches: dict[str, Path], tmp_path: Path
) -> None:
    caches = {name: Cache(path) for name, path in toy_caches.items()}
    curve = connectivity_curve(*pair, caches, points=3, bn_policy="average")
    assert list(curve["lam"]) == [0.0, 0.5, 1.0]
    assert curve["score"].iloc[0] == pytest.approx(score_of(pair[0], caches), abs=1e-9)
    assert curve["score"].iloc[-1] == pytest.approx(score_of(pair[1], caches), abs=1e-9)
    assert np.isfinite(curve["loss"]).all() and (curve["loss"] > 0).all()
    sample = BatchNormSample(patches=6, batch_size=4, seed=2)
    recomputed = connectivity_curve(
        *pair, caches, points=2, bn_policy="recompute", bn_sample=sample
    )
    # recomputed statistics change the models, so the scores differ from the stored ones
    assert list(recomputed["lam"]) == [0.0, 1.0]
    assert not np.allclose(recomputed["loss"], curve["loss"].iloc[[0, -1]])
    # ... into those torch's update_bn gives on the soups' augmented patches
    patches = recompute_patches(caches, SPEC, SETTINGS, sample)
    images = [torch.stack([patches[i]["image"] for i in range(j, min(j + 4, 6))]) for j in (0, 4)]
    for lam, path in zip((0, -1), pair, strict=True):
        assert recomputed["score"].iloc[lam] == pytest.approx(
            score_of(path, caches, images), abs=1e-9
        )
    out = tmp_path / "lmc.png"
    plot_connectivity({"average": curve, "recompute": recomputed}, out, "A to B")
    assert out.exists()


def test_midpoint_statistics_policies_are_the_soups(
    pair: tuple[Path, Path], toy_caches: dict[str, Path]
) -> None:
    """Halfway, ``average`` is the uniform soup; ``copy-best`` takes the better endpoint's."""
    caches = {name: Cache(path) for name, path in toy_caches.items()}
    average = connectivity_curve(*pair, caches, points=3, bn_policy="average")
    copied = connectivity_curve(*pair, caches, points=3, bn_policy="copy-best")
    assert average["score"].iloc[1] == pytest.approx(
        score_of_state(average_checkpoints(list(pair)), caches), abs=1e-9
    )
    best = max(pair, key=lambda path: score_of(path, caches))
    soup = average_checkpoints(list(pair))
    best_state, _ = load_checkpoint(best)
    soup.update(
        {name: t for name, t in best_state.items() if "running_" in name or "num_batches" in name}
    )
    assert copied["score"].iloc[1] == pytest.approx(score_of_state(soup, caches), abs=1e-9)
    assert list(copied["score"].iloc[[0, -1]]) == list(average["score"].iloc[[0, -1]])
    with pytest.raises(ValueError, match="unknown BatchNorm policy 'median'"):
        connectivity_curve(*pair, caches, points=2, bn_policy="median")  # type: ignore[arg-type]


def test_checkpoints_of_a_pretrained_encoder_need_neither_its_weights_nor_the_network(
    tmp_path: Path, toy_caches: dict[str, Path], no_network: list[str]
) -> None:
    """Their weights replace the pretrained encoder's: the curve and the sharpness build the
    model without looking for those (a compute node may have neither network nor cache)."""
    imagenet = dataclasses.replace(SPEC, encoder_weights="imagenet")
    pair = [checkpoint(tmp_path / f"{seed}.safetensors", seed, imagenet) for seed in (0, 1)]
    caches = {name: Cache(path) for name, path in toy_caches.items()}
    assert len(connectivity_curve(*pair, caches, points=2, bn_policy="average")) == 2
    assert len(checkpoint_sharpness(pair[0], caches, radii=[0.1], directions=1)) == 1
    assert no_network == []


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


def test_recompute_settings_of_a_soup_are_its_first_ingredients(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    state, metadata = load_checkpoint(pair[0])
    bare = {key: value for key, value in metadata.items() if key != "hyperparameters"}
    soup = tmp_path / "soup.safetensors"
    save_checkpoint(soup, state, {**bare, "ingredients": [str(pair[1]), str(pair[0])]})
    assert recorded_settings([soup, pair[0]]) == SETTINGS
    stranger = tmp_path / "stranger.safetensors"
    save_checkpoint(stranger, state, bare)
    assert recorded_settings([stranger, pair[1]]) == SETTINGS
    with pytest.raises(ValueError, match="stranger.safetensors: no training settings recorded"):
        recorded_settings([stranger])


def test_lesionsoup_connectivity_writes_the_sharpness_of_both_models(
    pair: tuple[Path, Path], toy_caches: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "lmc"
    code = main(
        [
            "connectivity", str(pair[0]), str(pair[1]),
            *(f"--cache={path}" for path in toy_caches.values()),
            "--points", "2", "--bn-policy", "average",
            "--sharpness-radii", "0.05", "0.2", "--sharpness-directions", "2",
            "--sharpness", str(out / "sharpness.csv"),
            "-o", str(out / "curve.csv"), "--figure", str(out / "curve.png"),
        ]
    )  # fmt: skip
    assert code == 0 and (out / "curve.png").is_file()
    table = pd.read_csv(out / "sharpness.csv")
    assert set(table["model"]) == {"A", "B"} and set(table["radius"]) == {0.05, 0.2}
    assert len(table) == 2 * 2 * 2  # models x directions x radii
    curve = pd.read_csv(out / "curve.csv")
    for name, lam in (("A", 0.0), ("B", 1.0)):  # the unperturbed loss is the curve's end
        own = table[table["model"] == name]
        base = (own["loss"] - own["increase"]).unique()
        at_end = curve.loc[curve["lam"] == lam, "loss"].iloc[0]
        assert base == pytest.approx([at_end], rel=1e-5)


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_a_part_path_moves_that_part_only(
    part: str, pair: tuple[Path, Path], toy_caches: dict[str, Path]
) -> None:
    caches = {name: Cache(path) for name, path in toy_caches.items()}
    curve = connectivity_curve(*pair, caches, points=3, bn_policy="average", part=part)
    a, b = (load_checkpoint(path)[0] for path in pair)
    # by hand: the encoder is smp's `encoder.` submodule, the decoder every other tensor
    # (decoder blocks and segmentation head); the part's tensors from B, the rest from A
    encoder = {name for name in a if name.startswith("encoder.")}
    in_part = encoder if part == "encoder" else set(a) - encoder
    moved = {name: (b if name in in_part else a)[name] for name in a}
    assert in_part and set(a) - in_part
    assert curve["score"].iloc[0] == pytest.approx(score_of(pair[0], caches), abs=1e-9)
    assert curve["score"].iloc[-1] == pytest.approx(score_of_state(moved, caches), abs=1e-9)
    assert curve["score"].iloc[-1] != pytest.approx(score_of(pair[1], caches), abs=1e-6)
