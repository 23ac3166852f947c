"""Model Stock and TIES-merging on state dicts, against hand-worked examples and the
papers' formulas written out here."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
import yaml
from conftest import TINY_SETTINGS, TINY_SPEC, write_pretrained_cache, write_toy_cache
from safetensors.torch import save_file
from support import REPO

from lesionsoup.cli import build_parser, main
from lesionsoup.core import paths
from lesionsoup.core.checkpoint import (
    PRETRAINED_START,
    SHARED_INITIALISATION,
    load_metadata,
    load_state_dict,
    save_checkpoint,
)
from lesionsoup.core.merge_rules import DEFAULT_KEEP
from lesionsoup.core.model import build_model
from lesionsoup.core.pretrained import cached_file, fetch, hub_cache, record_name, source_of
from lesionsoup.core.specs import ModelSpec
from lesionsoup.merging.anchored import model_stock, pretrained_start, ties
from lesionsoup.merging.averaging import average_checkpoints
from lesionsoup.merging.soups import merge
from lesionsoup.plan.ingredients import soup_arguments, soup_settings, soup_start

SCHEMA = REPO / "workflow" / "schemas" / "merging.schema.yaml"


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_model_stock_two_layers_by_hand() -> None:
    anchor = {
        "a.weight": _t(1.0, -1.0),
        "b.weight": _t(0.0, 0.0),
        "bn.running_mean": _t(0.0),
        "bn.num_batches_tracked": torch.tensor(3),
    }
    # a: updates u1 = (2, 0), u2 = (1, sqrt 3), both of norm 2: cos = 2 / (2 * 2) = 1/2,
    # 60 degrees; t = 2 * 1/2 / (1 + 1/2) = 2/3; mean update (1.5, sqrt 3 / 2), so the merged
    # tensor is (1, -1) + 2/3 * (1.5, sqrt 3 / 2) = (2, -1 + sqrt 3 / 3).
    # b: updates (1, 2) and (3, 6) are parallel: cos = 1, t = 2 / 2 = 1, the plain average.
    # Statistics are no updates: averaged (running_mean), maximum (num_batches_tracked).
    first = {
        "a.weight": _t(3.0, -1.0),
        "b.weight": _t(1.0, 2.0),
        "bn.running_mean": _t(1.0),
        "bn.num_batches_tracked": torch.tensor(5),
    }
    second = {
        "a.weight": _t(2.0, -1.0 + math.sqrt(3)),
        "b.weight": _t(3.0, 6.0),
        "bn.running_mean": _t(4.0),
        "bn.num_batches_tracked": torch.tensor(7),
    }
    merged = model_stock(anchor, [first, second])
    torch.testing.assert_close(merged["a.weight"], _t(2.0, -1.0 + math.sqrt(3) / 3))
    torch.testing.assert_close(merged["b.weight"], _t(2.0, 4.0))
    torch.testing.assert_close(merged["bn.running_mean"], _t(2.5))
    assert int(merged["bn.num_batches_tracked"]) == 7


def test_model_stock_keeps_the_anchor_where_updates_cancel_or_vanish() -> None:
    anchor = {"w": _t(1.0, 1.0), "z": _t(5.0)}
    # w: updates (1, 0) and (-1, 0), cos = -1, clamped to 0: t = 0, the anchor.
    # z: no update at all: the anchor.
    merged = model_stock(
        anchor, [{"w": _t(2.0, 1.0), "z": _t(5.0)}, {"w": _t(0.0, 1.0), "z": _t(5.0)}]
    )
    torch.testing.assert_close(merged["w"], _t(1.0, 1.0))
    torch.testing.assert_close(merged["z"], _t(5.0))
    # k = 3, w: updates (1, 0), (2, 0) and 0: cosines 1, 0, 0 (a zero update is orthogonal),
    # mean 1/3; t = 3 * 1/3 / (1 + 2 * 1/3) = 3/5; mean update (1, 0): (1.6, 1).
    models = [{"w": _t(2.0, 1.0), "z": _t(5.0)}, {"w": _t(3.0, 1.0), "z": _t(5.0)}, anchor]
    torch.testing.assert_close(model_stock(anchor, models)["w"], _t(1.6, 1.0))


def _paper_model_stock(anchor: dict, models: list[dict]) -> dict:
    """Jang et al.'s rule per tensor, written from the formula: mean pairwise cosine of the
    updates, t = k cos / (1 + (k - 1) cos), w = t w_avg + (1 - t) w0."""
    out = {}
    k = len(models)
    for name, w0 in anchor.items():
        deltas = [(m[name] - w0).flatten() for m in models]
        cosines = [
            torch.nn.functional.cosine_similarity(deltas[i], deltas[j], dim=0)
            for i, j in itertools.combinations(range(k), 2)
        ]
        cos = float(sum(cosines) / len(cosines))
        t = k * cos / (1 + (k - 1) * cos)
        w_avg = sum(m[name] for m in models) / k
        out[name] = t * w_avg + (1 - t) * w0
    return out


@pytest.mark.parametrize("k", [2, 3, 5])
def test_model_stock_equals_the_papers_formula_on_random_tensors(k: int) -> None:
    generator = torch.Generator().manual_seed(k)
    shapes = {"conv.weight": (4, 3, 3, 3), "conv.bias": (4,), "head.weight": (2, 4)}
    anchor = {
        n: torch.randn(s, generator=generator, dtype=torch.float64) for n, s in shapes.items()
    }
    shared = {
        n: torch.randn(s, generator=generator, dtype=torch.float64) for n, s in shapes.items()
    }
    models = [
        {
            n: anchor[n] + shared[n] + torch.randn(s, generator=generator, dtype=torch.float64)
            for n, s in shapes.items()
        }
        for _ in range(k)
    ]
    expected = _paper_model_stock(anchor, models)
    merged = model_stock(anchor, models)
    for name in shapes:
        torch.testing.assert_close(merged[name], expected[name])
        assert not torch.allclose(merged[name], sum(m[name] for m in models) / k)


def test_ties_by_hand_with_disagreeing_signs() -> None:
    anchor = {"x": _t(1.0, 1.0), "y": _t(0.0, 2.0)}
    updates = [
        ({"x": _t(4.0, 3.5), "y": _t(-3.0, 0.1)}),
        ({"x": _t(-1.5, 0.2), "y": _t(4.0, 0.3)}),
        ({"x": _t(-1.5, -0.4), "y": _t(-2.0, 0.25)}),
    ]
    models = [{n: anchor[n] + u[n] for n in anchor} for u in updates]
    # keep = 0.5 of each model's 4 values, over the whole model: 2 largest magnitudes.
    #   model 1 keeps 4, 3.5 (its -3 in y is trimmed: per tensor it would be kept)
    #   model 2 keeps -1.5, 4;   model 3 keeps -1.5, -2
    # x0: 4 - 1.5 - 1.5 = 1 > 0: elected + by total magnitude (against 2 of 3 by count);
    #     disjoint mean of {4} = 4
    # x1: only 3.5 survives: 3.5
    # y0: 4 - 2 = 2 > 0: +; the -2 disagrees, mean of {4} = 4 (a per-tensor trim would keep
    #     model 1's -3: sum -1, elected -, mean of {-3, -2} = -2.5)
    # y1: every value trimmed: 0
    merged = ties(anchor, models, keep=0.5)
    torch.testing.assert_close(merged["x"], _t(1.0 + 4.0, 1.0 + 3.5))
    torch.testing.assert_close(merged["y"], _t(0.0 + 4.0, 2.0 + 0.0))
    scaled = ties(anchor, models, keep=0.5, scale=0.5)
    torch.testing.assert_close(scaled["x"], _t(1.0 + 2.0, 1.0 + 1.75))


def test_ties_disjoint_mean_averages_the_agreeing_values_only() -> None:
    anchor = {"w": _t(0.0, 0.0, 0.0)}
    # keep everything: w0: 3 + 1 - 2 = 2, +, mean {3, 1} = 2; w1: -1 + 1 = 0: elected 0, 0;
    # w2: -1 - 3 + 0 = -4, -, mean {-1, -3} = -2 (the zero of model 3 is not averaged in).
    models = [{"w": _t(3.0, -1.0, -1.0)}, {"w": _t(1.0, 1.0, -3.0)}, {"w": _t(-2.0, 0.0, 0.0)}]
    merged = ties(anchor, models, keep=1.0)
    torch.testing.assert_close(merged["w"], _t(2.0, 0.0, -2.0))


def test_ties_leaves_statistics_and_unmerged_tensors_to_the_average() -> None:
    anchor = {"w": _t(0.0), "bn.running_var": _t(1.0), "decoder.w": _t(0.0)}
    models = [
        {"w": _t(2.0), "bn.running_var": _t(3.0), "decoder.w": _t(2.0)},
        {"w": _t(4.0), "bn.running_var": _t(5.0), "decoder.w": _t(-4.0)},
    ]
    merged = ties(anchor, models, lambda name: not name.startswith("decoder."), keep=1.0)
    torch.testing.assert_close(merged["w"], _t(3.0))
    torch.testing.assert_close(merged["bn.running_var"], _t(4.0))
    torch.testing.assert_close(merged["decoder.w"], _t(-1.0))


def test_anchored_merges_refuse_mismatched_models() -> None:
    with pytest.raises(ValueError, match="other tensors"):
        model_stock({"w": _t(0.0)}, [{"v": _t(0.0)}])
    with pytest.raises(ValueError, match="no fine-tuned"):
        ties({"w": _t(0.0)}, [])
    with pytest.raises(ValueError, match="fraction"):
        ties({"w": _t(0.0)}, [{"w": _t(1.0)}], keep=0.0)


# -- as soup rules: the anchor is the ingredients' shared initialisation --

ARCHITECTURE = {"arch": "tiny", "classes": 2}


def _write(path: Path, state: dict[str, torch.Tensor], **metadata: Any) -> Path:
    save_checkpoint(path, state, {"architecture": ARCHITECTURE, "cache_size": 64, **metadata})
    return path


def _family(root: Path, k: int) -> tuple[Path, list[Path]]:
    """A shared initialisation and k runs from it (the last one a continuation of the first)."""
    generator = torch.Generator().manual_seed(0)
    start = {"w": torch.randn(6, generator=generator), "bn.running_mean": torch.zeros(2)}
    init = _write(root / "init.safetensors", start, init_id="i0", role=SHARED_INITIALISATION)
    runs = []
    for index in range(k):
        parent = runs[0] if index == k - 1 else init
        state = {name: t + torch.randn(t.shape, generator=generator) for name, t in start.items()}
        meta = {"init_id": "i0", "start": "shared", "parent": str(parent)}
        runs.append(_write(root / f"run{index}.safetensors", state, **meta))
    return init, runs


@pytest.mark.parametrize("rule", ["model_stock", "ties"])
def test_a_soup_of_an_anchored_rule_merges_around_the_shared_initialisation(
    tmp_path: Path, rule: str
) -> None:
    init, runs = _family(tmp_path, 3)
    result = merge(runs, rule, keep=0.5)
    anchor, models = load_state_dict(init), [load_state_dict(path) for path in runs]
    expected = (
        model_stock(anchor, models) if rule == "model_stock" else ties(anchor, models, keep=0.5)
    )
    for name, tensor in expected.items():
        torch.testing.assert_close(result.state_dict[name], tensor)
    torch.testing.assert_close(
        result.state_dict["bn.running_mean"], average_checkpoints(runs)["bn.running_mean"]
    )
    assert result.metadata()["merged_from"] == str(init)
    assert result.metadata().get("keep") == (0.5 if rule == "ties" else None)
    assert set(result.weights.values()) == {1 / 3}


@pytest.mark.parametrize("rule", ["model_stock", "ties"])
def test_anchored_rules_refuse_ingredients_without_a_common_start(
    tmp_path: Path, rule: str
) -> None:
    _, runs = _family(tmp_path, 2)
    alone = _write(tmp_path / "alone.safetensors", load_state_dict(runs[0]), start="independent")
    with pytest.raises(
        ValueError,
        match=f"the {rule} rule merges updates from the ingredients' common start.*alone",
    ):
        merge([runs[0], alone], rule)
    merge([runs[0], alone], "uniform")  # a uniform soup may mix them, with a warning


def test_anchored_rules_refuse_a_start_that_is_not_the_recorded_one(tmp_path: Path) -> None:
    init, runs = _family(tmp_path, 2)
    start = load_state_dict(init)
    _write(init, {n: t + 1 for n, t in start.items()}, init_id="i1", role=SHARED_INITIALISATION)
    with pytest.raises(ValueError, match="records init_id i0, but .*init.safetensors.* is i1"):
        merge(runs, "model_stock")
    copy = _write(tmp_path / "copy.safetensors", start, init_id="i0", role=SHARED_INITIALISATION)
    _write(init, start, init_id="i0", role=SHARED_INITIALISATION)
    other = _write(
        tmp_path / "other.safetensors",
        load_state_dict(runs[1]),
        init_id="i0",
        start="shared",
        parent=str(copy),
    )
    with pytest.raises(ValueError, match="needs one start"):
        merge([runs[0], other], "ties")


def test_the_plan_refuses_an_anchored_soup_of_independent_starts() -> None:
    config = {
        "training": {"init": "independent"},
        "merging": {
            "soups": {"stock": {"rule": "model_stock"}, "t": {"rule": "ties", "keep": 0.1}}
        },
    }
    with pytest.raises(
        ValueError, match=r"merging.soups.stock: the model_stock rule .* start \['independent'\]"
    ):
        soup_settings(config, "stock")
    shared = {**config, "training": {"init": "shared"}}
    assert soup_settings(shared, "t")["keep"] == 0.1
    assert "--keep 0.1" in soup_arguments(shared, "t")
    assert "keep" not in soup_settings(shared, "stock")
    assert soup_start(shared, "IDRID", "stock") == [paths.init("IDRID")]
    assert soup_start({**shared, "merging": {"soups": {"uniform": {}}}}, "IDRID", "uniform") == []
    bad = {**shared, "merging": {"soups": {"u": {"rule": "uniform", "keep": 0.1}}}}
    with pytest.raises(ValueError, match="merging.soups.u: keep is the ties rule's"):
        soup_settings(bad, "u")


def test_the_schema_takes_keep_as_a_fraction_without_a_default() -> None:
    """Snakemake fills schema defaults in, so a default keep would reach every soup."""
    schema = yaml.safe_load(SCHEMA.read_text())
    jsonschema.validate({"soups": {"t": {"rule": "ties", "keep": 0.5}}}, schema)
    jsonschema.validate({"soups": {"m": {"rule": "model_stock"}}}, schema)
    for bad in (0, 1.5):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"soups": {"t": {"rule": "ties", "keep": bad}}}, schema)
    soup = schema["properties"]["soups"]["additionalProperties"]["properties"]
    assert "default" not in soup["keep"] and str(DEFAULT_KEEP) in soup["keep"]["description"]


def test_an_anchored_part_soup_merges_the_part_and_keeps_its_anchors_rest(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    start = {"encoder.w": torch.randn(5, generator=generator), "decoder.w": torch.randn(3)}
    init = _write(tmp_path / "init.safetensors", start, init_id="i0", role=SHARED_INITIALISATION)
    runs = [
        _write(
            tmp_path / f"run{index}.safetensors",
            {name: t + torch.randn(t.shape, generator=generator) for name, t in start.items()},
            init_id="i0",
            start="shared",
            parent=str(init),
        )
        for index in range(3)
    ]
    states = [load_state_dict(path) for path in runs]
    best = max(range(3), key=lambda index: float(states[index]["decoder.w"].sum()))
    result = merge(
        runs, "model_stock", part="encoder", scorer=lambda state: float(state["decoder.w"].sum())
    )
    expected = model_stock(start, states)
    torch.testing.assert_close(result.state_dict["encoder.w"], expected["encoder.w"])
    assert torch.equal(result.state_dict["decoder.w"], states[best]["decoder.w"])
    assert result.anchor == str(runs[best])


def test_the_merge_command_takes_keep_as_a_fraction() -> None:
    parser = build_parser()
    base = ["merge", "-o", "m.safetensors", "--rule", "ties", "--cache", "c", "x"]
    assert parser.parse_args([*base, "--keep", "0.3"]).keep == 0.3
    assert parser.parse_args(base).keep == DEFAULT_KEEP
    assert parser.parse_args(base).anchor is None
    assert parser.parse_args([*base, "--anchor", "s.safetensors"]).anchor == Path("s.safetensors")
    for bad in ("0", "1.5", "many"):
        with pytest.raises(SystemExit):
            parser.parse_args([*base, "--keep", bad])


# Encoder soups of independent runs: the pretrained start as their anchor.

PRETRAINED_ARCHITECTURE = {**ARCHITECTURE, "encoder": "resnet18", "encoder_weights": "imagenet"}


def _pretrained_family(root: Path, k: int, encoder: str = "resnet18") -> tuple[Path, list[Path]]:
    """A pretrained start (one encoder start tensor, a decoder of seed 0) and k independent
    runs from it: each its own updates of the encoder around a shared direction (so that
    their cosines are positive) and its own decoder, as each seed draws."""
    root.mkdir(exist_ok=True)
    generator = torch.Generator().manual_seed(3)
    start = {
        "encoder.w": torch.randn(6, generator=generator),
        "encoder.v": torch.randn(2, 3, generator=generator),
        "decoder.w": torch.randn(4, generator=generator),
    }
    anchor = root / "pretrained-start.safetensors"
    save_checkpoint(
        anchor,
        start,
        {
            "role": PRETRAINED_START,
            "architecture": {**PRETRAINED_ARCHITECTURE, "encoder": encoder},
            "pretrained": {"encoder": encoder, "weights": "imagenet", "sha256": "0" * 64},
        },
    )
    direction = {name: torch.randn(t.shape, generator=generator) for name, t in start.items()}
    runs = []
    for index in range(k):
        state = {
            name: t + direction[name] + 0.7 * torch.randn(t.shape, generator=generator)
            for name, t in start.items()
        }
        state["decoder.w"] = torch.randn(4, generator=generator)  # its seed's decoder
        path = root / f"independent{index}.safetensors"
        save_checkpoint(
            path,
            state,
            {"architecture": PRETRAINED_ARCHITECTURE, "cache_size": 64, "start": "independent"},
        )
        runs.append(path)
    return anchor, runs


def _stock_by_hand(anchor: torch.Tensor, tensors: list[torch.Tensor]) -> torch.Tensor:
    """Model Stock of one tensor written out: the mean pairwise cosine of the updates
    ``w_i - w0``, ``t = k cos / (1 + (k - 1) cos)``, ``w0 + t (mean w_i - w0)``."""
    k = len(tensors)
    updates = [(t - anchor).flatten().double() for t in tensors]
    cosines = [float(a @ b / (a.norm() * b.norm())) for a, b in itertools.combinations(updates, 2)]
    cos = sum(cosines) / len(cosines)
    assert 0 < cos < 1  # the family's shared direction: no clamping in play
    t = k * cos / (1 + (k - 1) * cos)
    average = torch.stack([x.double() for x in tensors]).mean(0)
    return (anchor.double() + t * (average - anchor.double())).to(anchor.dtype)


def _decoder_score(state: dict[str, torch.Tensor]) -> float:
    return float(state["decoder.w"].sum())


def test_an_encoder_soup_of_independent_runs_merges_around_the_pretrained_start(
    tmp_path: Path,
) -> None:
    anchor, runs = _pretrained_family(tmp_path, 3)
    states = [load_state_dict(path) for path in runs]
    start = load_state_dict(anchor)
    best = max(range(3), key=lambda index: _decoder_score(states[index]))
    result = merge(runs, "model_stock", part="encoder", scorer=_decoder_score, start=anchor)
    for name in ("encoder.w", "encoder.v"):
        expected = _stock_by_hand(start[name], [state[name] for state in states])
        torch.testing.assert_close(result.state_dict[name], expected)
        assert not torch.allclose(result.state_dict[name], start[name])
    assert torch.equal(result.state_dict["decoder.w"], states[best]["decoder.w"])
    assert result.anchor == str(runs[best])
    assert result.metadata()["merged_from"] == str(anchor)
    assert set(result.starts.values()) == {"independent"}
    soup = merge(runs, "ties", part="encoder", scorer=_decoder_score, start=anchor, keep=0.5)
    expected = ties(start, states, lambda name: name.startswith("encoder."), keep=0.5)
    for name in ("encoder.w", "encoder.v"):
        torch.testing.assert_close(soup.state_dict[name], expected[name])
    assert soup.metadata()["merged_from"] == str(anchor)


def test_the_pretrained_start_anchors_only_encoder_soups_of_its_own_encoder(
    tmp_path: Path,
) -> None:
    anchor, runs = _pretrained_family(tmp_path, 2)
    with pytest.raises(ValueError, match="only the encoder is common.*averages the decoder"):
        merge(runs, "model_stock", part="decoder", scorer=_decoder_score, start=anchor)
    with pytest.raises(ValueError, match="only the encoder is common.*averages the full"):
        merge(runs, "ties", start=anchor)
    other, _ = _pretrained_family(tmp_path / "other", 1, encoder="resnet34")
    with pytest.raises(
        ValueError,
        match=r"anchor .*other/pretrained-start.safetensors is a pretrained start of encoder "
        r"'resnet34', but .*independent0.safetensors was trained from encoder 'resnet18'",
    ):
        merge(runs, "model_stock", part="encoder", scorer=_decoder_score, start=other)
    warmed = tmp_path / "warmed.safetensors"
    meta = {"architecture": PRETRAINED_ARCHITECTURE, "cache_size": 64, "init_id": "i0"}
    save_checkpoint(warmed, load_state_dict(runs[1]), {**meta, "start": "shared"})
    with pytest.raises(ValueError, match="warmed.safetensors started from a shared init"):
        merge([runs[0], warmed], "ties", part="encoder", scorer=_decoder_score, start=anchor)


def test_a_given_shared_anchor_must_be_the_one_the_ingredients_lead_to(tmp_path: Path) -> None:
    init, runs = _family(tmp_path, 2)
    assert merge(runs, "model_stock", start=init).metadata()["merged_from"] == str(init)
    copy = _write(
        tmp_path / "copy.safetensors",
        load_state_dict(init),
        init_id="i0",
        role=SHARED_INITIALISATION,
    )
    with pytest.raises(ValueError, match="anchor .*copy.safetensors is not the ingredients'"):
        merge(runs, "model_stock", start=copy)
    _, independent = _pretrained_family(tmp_path / "independent", 2)
    with pytest.raises(ValueError, match="common start, and they have none"):
        merge(independent, "ties", part="encoder", scorer=_decoder_score, start=init)
    with pytest.raises(ValueError, match="only an anchored rule merges around a start"):
        merge(runs, "uniform", start=init)


def _independent_config(encoder_weights: str | None) -> dict:
    return {
        "model": {"encoder": "resnet18", "encoder_weights": encoder_weights},
        "training": {"init": "independent"},
        "merging": {
            "soups": {
                "stock-encoder": {"rule": "model_stock", "part": "encoder"},
                "ties-encoder": {"rule": "ties", "part": "encoder", "keep": 0.3},
                "stock-decoder": {"rule": "model_stock", "part": "decoder"},
                "ties": {},
            }
        },
    }


def test_the_plan_anchors_encoder_soups_of_independent_runs_at_the_pretrained_start() -> None:
    config = _independent_config("imagenet")
    start = "results/models/pretrained-resnet18.imagenet.safetensors"
    assert paths.pretrained_start(config["model"]) == start
    assert soup_start(config, "IDRID", "stock-encoder") == [start]
    assert soup_start(config, "IDRID", "ties-encoder") == [start]
    assert soup_settings(config, "ties-encoder")["keep"] == 0.3
    with pytest.raises(
        ValueError,
        match=r"merging.soups.stock-decoder: the model_stock rule .* start \['independent'\].*"
        r"a decoder soup of them has none",
    ):
        soup_start(config, "IDRID", "stock-decoder")
    with pytest.raises(ValueError, match=r"merging.soups.ties: .*a full soup of them has none"):
        soup_settings(config, "ties")
    drawn = _independent_config(None)
    with pytest.raises(
        ValueError,
        match=r"merging.soups.stock-encoder: .*encoder_weights is null: each run drew its own",
    ):
        soup_start(drawn, "IDRID", "stock-encoder")
    shared = {**config, "training": {"init": "shared"}}
    assert soup_start(shared, "IDRID", "stock-decoder") == [paths.init("IDRID")]
    assert soup_start(shared, "IDRID", "stock-encoder") == [paths.init("IDRID")]


def test_the_pretrained_start_is_the_model_independent_runs_begin_from(
    tmp_path: Path, no_network: list[str]
) -> None:
    """``lesionsoup pretrained-start`` builds the model as ``_fresh_model`` does for an
    independent run (the cached encoder), records the fetch, and is the same every time."""
    spec = dataclasses.replace(TINY_SPEC, encoder_weights="imagenet")
    cache = tmp_path / "project"
    encoder = write_pretrained_cache(cache, "resnet18")
    record = cache / record_name("resnet18", "imagenet")
    record.write_text(json.dumps(fetch("resnet18", "imagenet", cache)))
    outputs = [tmp_path / f"start{index}.safetensors" for index in range(2)]
    for output in outputs:
        arguments = ["-o", str(output), "--model", json.dumps(spec.as_dict())]
        arguments += ["--record", str(record), "--pretrained-cache", str(cache)]
        assert main(["pretrained-start", *arguments]) == 0
    state, again = (load_state_dict(path) for path in outputs)
    model = build_model(spec, cache).state_dict()
    assert state.keys() == model.keys() and all(torch.equal(state[n], again[n]) for n in state)
    kept = [name for name in encoder if f"encoder.{name}" in state]  # stages of its depth
    assert kept
    for name in kept:
        assert torch.equal(state[f"encoder.{name}"], encoder[name]), name
    metadata = load_metadata(outputs[0])
    assert (
        metadata["role"] == PRETRAINED_START
        and ModelSpec.from_dict(metadata["architecture"]) == spec
    )
    assert metadata["pretrained"]["sha256"] == json.loads(record.read_text())["sha256"]
    assert "cache" not in metadata["pretrained"] and no_network == []
    with pytest.raises(ValueError, match="encoder_weights is null"):
        pretrained_start(TINY_SPEC, cache, json.loads(record.read_text()))


def test_the_merge_command_merges_independent_encoders_around_the_pretrained_start(
    tmp_path: Path, no_network: list[str]
) -> None:
    """End to end on small U-Nets: ``lesionsoup pretrained-start``, then three independent
    ingredients (the cached encoder moved along a shared direction plus their own noise, the
    decoder their seed's), merged by ``lesionsoup merge --rule model_stock --part encoder
    --anchor``: the encoder is Model Stock around the pretrained encoder, written out here,
    and the rest is the part soup's anchor ingredient's."""
    spec = dataclasses.replace(TINY_SPEC, encoder_weights="imagenet")
    cache = tmp_path / "project"
    cached = write_pretrained_cache(cache, "resnet18")
    # weights a network can run on (the fake cache's, uniform in [0, 1), overflow): a seeded
    # initialisation of the encoder, written where the cache holds the weights
    torch.manual_seed(11)
    fresh = build_model(TINY_SPEC).state_dict()
    usable = {n: fresh.get(f"encoder.{n}", t).contiguous() for n, t in cached.items()}
    save_file(usable, str(cached_file(source_of("resnet18", "imagenet"), hub_cache(cache))))
    record = cache / record_name("resnet18", "imagenet")
    record.write_text(json.dumps(fetch("resnet18", "imagenet", cache)))
    start = tmp_path / "pretrained-start.safetensors"
    arguments = ["-o", str(start), "--model", json.dumps(spec.as_dict()), "--record", str(record)]
    assert main(["pretrained-start", *arguments, "--pretrained-cache", str(cache)]) == 0
    anchor = load_state_dict(start)
    generator = torch.Generator().manual_seed(7)
    direction = {n: torch.randn(t.shape, generator=generator) for n, t in anchor.items()}
    runs, states = [], []
    for seed in range(3):
        torch.manual_seed(seed)  # an independent run's decoder and head: its seed's
        state = {n: t.clone() for n, t in build_model(spec, cache).state_dict().items()}
        for name, tensor in state.items():
            if name.startswith("encoder.") and tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=generator)
                state[name] = tensor + 0.01 * (direction[name] + noise)
        path = tmp_path / f"seed{seed}.safetensors"
        metadata = {"architecture": spec.as_dict(), "cache_size": 64, "start": "independent"}
        save_checkpoint(path, state, {**metadata, "hyperparameters": TINY_SETTINGS.as_dict()})
        runs.append(path)
        states.append(state)
    toy = write_toy_cache(tmp_path / "cache" / "AAA", "AAA")
    output = tmp_path / "soup.safetensors"
    options = ["--rule", "model_stock", "--part", "encoder", "--anchor", str(start)]
    code = main(["merge", "-o", str(output), *options, "--cache", str(toy), *map(str, runs)])
    assert code == 0
    merged, metadata = load_state_dict(output), load_metadata(output)
    assert metadata["merged_from"] == str(start) and metadata["part"] == "encoder"
    rest = load_state_dict(Path(metadata["anchor"]))
    moved = 0
    for name, tensor in merged.items():
        if not name.startswith("encoder."):
            assert torch.equal(tensor, rest[name]), name
        elif tensor.is_floating_point() and "running_" not in name:
            expected = _stock_by_hand(anchor[name], [state[name] for state in states])
            torch.testing.assert_close(tensor, expected, msg=name)
            moved += 1
    assert moved and no_network == []
