import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_toy_cache
from support.lesion_counting import naive_counts
from support.predictor import save_tiny
from support.preprocess import blank, manifest_of, write_case

from lesionsoup.core.device_histograms import bin_image
from lesionsoup.core.lesion_components import size_edges
from lesionsoup.core.lesions import FOV_BIT, IGNORE_BIT, TRAINED, Lesion
from lesionsoup.core.metrics import (
    DEFAULT_BINS,
    POOLED_METRICS,
    LesionHistogram,
    SegmentationHistograms,
    average_precision,
    expected_calibration_error,
)
from lesionsoup.data.cache import Cache
from lesionsoup.data.fov import find_fov
from lesionsoup.data.manifest import COLUMNS as MANIFEST_COLUMNS
from lesionsoup.data.manifest import write_manifest
from lesionsoup.data.preprocess import MaskRules, build_cache
from lesionsoup.evaluation import per_model
from lesionsoup.evaluation.evaluate import (
    COLUMNS,
    EvaluationError,
    aggregate,
    aggregated_evaluations,
    conventions_path,
    evaluate,
    evaluation_metrics,
    load_evaluation,
    load_model_table,
    native_labels,
    save_evaluation,
    save_model_table,
)
from lesionsoup.evaluation.per_model import EvaluationTarget, evaluate_model
from lesionsoup.evaluation.statistics import image_histograms_from_dict
from lesionsoup.inference.infer import InferenceSettings
from lesionsoup.inference.predictor import load_predictor
from lesionsoup.training.sampling import to_tensors


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("study")
    save_tiny(folder / "model.safetensors", seed=0)
    splits = {"train": 1, "test": 2}
    return {
        "model": folder / "model.safetensors",
        "AAA": write_toy_cache(folder / "AAA", "AAA", splits=splits, seed=1),
        "BBB": write_toy_cache(folder / "BBB", "BBB", splits=splits, seed=2),
    }


@pytest.fixture(scope="module")
def result_aaa(study) -> dict:
    return evaluate(study["model"], study["AAA"])


def test_histograms_equal_a_direct_computation(study, result_aaa):
    result = result_aaa
    json.dumps(result, allow_nan=False)  # JSON-able as it is
    assert result["test_dataset"] == "AAA" and result["split"] == "test"
    assert result["images"] == 2 and result["megapixels"] == pytest.approx(2 * 64 * 64 / 1e6)
    assert result["resolution"] == "cache" and result["inference"]["mode"] == "whole"
    assert "pooling" in result["conventions"] and result["seconds"] > 0
    assert result["model"] == str(study["model"]) and result["device"] == "cpu"
    predictor = load_predictor(study["model"])
    cache = Cache(study["AAA"])
    expected = {lesion: LesionHistogram(DEFAULT_BINS) for lesion in TRAINED}
    components = {lesion: np.zeros((3, 4), np.int64) for lesion in TRAINED}
    for image_id in cache.ids_in("test"):
        image, labels = np.asarray(cache.image(image_id)), np.asarray(cache.labels(image_id))
        probs = predictor.predict(to_tensors(image, labels)[0][None])[0].numpy()
        valid = (labels & FOV_BIT) > 0
        for channel, lesion in enumerate(TRAINED):
            target = (labels & lesion.bit) > 0
            expected[lesion].update(probs[channel], target, valid)
            counts = next(
                c
                for c in result["per_image"]
                if c["image_id"] == image_id and c["lesion"] == lesion.value
            )
            predicted = probs[channel] >= 0.5
            assert counts["tp"] == int((predicted & target & valid).sum())
            assert counts["fp"] == int((predicted & ~target & valid).sum())
            assert counts["fn"] == int((~predicted & target & valid).sum())
            components[lesion] += naive_counts(target, predicted, valid, size_edges(lesion))
    pooled = SegmentationHistograms.from_dict(result["histograms"])
    assert pooled.lesions == TRAINED
    for lesion in TRAINED:
        expected[lesion].components = components[lesion]
        assert pooled[lesion] == expected[lesion]
        assert pooled[lesion].positive_pixels > 0
    assert sum(int(c[:, 0].sum()) for c in components.values()) > 0  # the toy cache has lesions


def test_per_image_histograms_rescore_the_whole_set_and_stay_small(result_aaa):
    images = image_histograms_from_dict(result_aaa["image_histograms"], result_aaa["histograms"])
    pooled = SegmentationHistograms.from_dict(result_aaa["histograms"])
    assert result_aaa["image_histograms"]["image_ids"] == _test_ids(result_aaa)
    for lesion in TRAINED:
        rescored = images[lesion.value].pooled()  # every test image once
        assert rescored.positive_pixels == pooled[lesion].positive_pixels
        assert np.array_equal(rescored.components, pooled[lesion].components)
        for name, metric in POOLED_METRICS.items():  # the groups keep every metric exact
            value = pytest.approx(metric(pooled[lesion]), abs=1e-12, nan_ok=True)
            assert metric(rescored) == value, name
    size = len(json.dumps(result_aaa["image_histograms"]))
    assert size / result_aaa["images"] <= 10_000  # bytes per image and model


def _test_ids(result: dict) -> list[str]:
    return Cache(Path(result["cache"])).ids_in(result["split"])


def test_an_image_listed_twice_counts_twice(study):
    image_id = Cache(study["AAA"]).ids_in("test")[0]
    once = evaluate(study["model"], study["AAA"], image_ids=[image_id])
    twice = evaluate(study["model"], study["AAA"], image_ids=[image_id, image_id])
    single = SegmentationHistograms.from_dict(once["histograms"])
    assert SegmentationHistograms.from_dict(twice["histograms"]) == single + single
    assert len(twice["per_image"]) == 2 * len(once["per_image"]) == 2 * len(TRAINED)
    assert twice["images"] == 2


def test_inference_settings_are_applied_and_recorded(study, result_aaa):
    settings = InferenceSettings(tta=("horizontal",))
    flipped = evaluate(study["model"], study["AAA"], settings=settings, bins=100)
    assert flipped["inference"]["tta"] == ["horizontal"]
    assert flipped["histograms"]["bins"] == 100
    assert len(flipped["histograms"]["lesions"]["EX"]["positives"]) == 101
    a = SegmentationHistograms.from_dict(flipped["histograms"])
    b = SegmentationHistograms.from_dict(result_aaa["histograms"])
    assert a["EX"].valid_pixels == b["EX"].valid_pixels


def test_bad_requests_are_named(study, tmp_path):
    with pytest.raises(EvaluationError, match="no images in split 'valid'"):
        evaluate(study["model"], study["AAA"], split="valid")
    with pytest.raises(EvaluationError, match="no images"):
        evaluate(study["model"], study["AAA"], image_ids=["nope"])
    with pytest.raises(ValueError, match="manifest"):
        evaluate(study["model"], study["AAA"], resolution="native")
    with pytest.raises(ValueError, match="resolution"):
        evaluate(study["model"], study["AAA"], resolution="retina")
    with pytest.raises(FileNotFoundError, match="not a lesionsoup cache"):
        evaluate(study["model"], tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other"}')
    with pytest.raises(EvaluationError, match="bad.json: not a lesionsoup evaluation"):
        load_evaluation(bad)


def native_study(folder: Path) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """Two 120 x 160 photographs with known native masks, their manifest and cache."""
    rows, ma_masks = [], {}
    for index in range(2):
        ma = np.zeros((120, 160), np.uint8)
        cv2.circle(ma, (70 + 5 * index, 60), 6, 255, -1)
        ex = np.zeros((120, 160), np.uint8)
        ex[40:50, 90:105] = 255
        row = write_case(folder, f"img{index}", 120, 160, masks={"MA": ma, "EX": ex})
        ma_masks[row["image_id"]] = ma > 0
        rows.append({**row, "split": "test", "dataset": "NAT"})
    manifest = pd.DataFrame(rows).reindex(columns=list(MANIFEST_COLUMNS))
    masks = [column for column in MANIFEST_COLUMNS if column.startswith("mask_")]
    manifest[masks] = manifest[masks].astype(object).fillna("")
    write_manifest(manifest, folder / "manifest.csv")
    build_cache(manifest, folder / "cache", 64, MaskRules(threshold=1), threads=1, progress=False)
    return folder / "manifest.csv", folder / "cache", ma_masks


def test_native_resolution_counts_native_pixels(study, tmp_path):
    manifest, cache_dir, ma_masks = native_study(tmp_path)
    result = evaluate(study["model"], cache_dir, resolution="native", manifest=manifest)
    assert result["resolution"] == "native"
    histograms = SegmentationHistograms.from_dict(result["histograms"])
    disc = np.pi * (0.45 * 120) ** 2
    assert histograms["MA"].valid_pixels == pytest.approx(2 * disc, rel=0.03)
    assert histograms["MA"].positive_pixels == sum(mask.sum() for mask in ma_masks.values())
    assert histograms["EX"].positive_pixels == 2 * 10 * 15
    # the same images counted at cache resolution see fewer, larger pixels
    cached = SegmentationHistograms.from_dict(evaluate(study["model"], cache_dir)["histograms"])
    assert cached["MA"].valid_pixels < histograms["MA"].valid_pixels / 2


def test_native_probabilities_are_the_cache_map_resampled(study, tmp_path):
    manifest, cache_dir, _ = native_study(tmp_path)
    result = evaluate(study["model"], cache_dir, resolution="native", manifest=manifest)
    cache, predictor = Cache(cache_dir), load_predictor(study["model"])
    expected = SegmentationHistograms(TRAINED)
    components: dict[Lesion, np.ndarray] = {}
    for row in pd.read_csv(manifest).to_dict("records"):
        image_id = row["image_id"]
        image, labels = np.asarray(cache.image(image_id)), np.asarray(cache.labels(image_id))
        fov = (labels & FOV_BIT) > 0
        probs = predictor.predict(to_tensors(image, labels)[0][None], fov=fov[None])[0].numpy()
        native = cache.geometry(image_id).map_to_native(probs.transpose(1, 2, 0))
        photo = cv2.imread(row["image_path"])
        native_fov = find_fov(photo).native_mask()
        native_labels = np.where(native_fov, FOV_BIT, 0).astype(np.uint8)
        for column, lesion in (("mask_MA", Lesion.MA), ("mask_EX", Lesion.EX)):
            native_labels[cv2.imread(row[column], cv2.IMREAD_GRAYSCALE) > 0] |= lesion.bit
        expected.add_image(image_id, native.transpose(2, 0, 1), native_labels)
        for channel, lesion in enumerate(TRAINED):  # lesion-wise, at native resolution
            target, predicted = (native_labels & lesion.bit) > 0, native[..., channel] >= 0.5
            counted = naive_counts(target, predicted, native_fov, size_edges(lesion))
            components[lesion] = components.get(lesion, 0) + counted
    for lesion in TRAINED:
        expected[lesion].components = components[lesion]
    assert SegmentationHistograms.from_dict(result["histograms"]) == expected


def test_native_truth_places_roi_masks_by_the_caches_resize_rule(tmp_path):
    """MAPLES-DR's ROI-space maps: under ``nearest`` the native truth is the map resized to
    its box by cv2.INTER_NEAREST, as in the cache; under ``preserve`` no speck is lost."""
    rng = np.random.default_rng(4)
    roi_mask = np.where(rng.random((150, 150)) < 0.02, np.uint8(255), np.uint8(0))
    row = write_case(tmp_path, "roi", masks={"MA": roi_mask}) | {"mask_roi": "140 90 260 210"}
    placed = np.zeros((300, 400), bool)
    placed[90:210, 140:260] = cv2.resize(roi_mask, (120, 120), interpolation=cv2.INTER_NEAREST) > 0
    nearest = native_labels(row, MaskRules(resize="nearest")) & Lesion.MA.bit
    np.testing.assert_array_equal(nearest > 0, placed)
    preserve = native_labels(row, MaskRules()) & Lesion.MA.bit
    assert (preserve > 0).sum() > placed.sum()


def test_native_resolution_names_a_manifest_without_the_image(study, tmp_path):
    manifest, cache_dir, _ = native_study(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    rows = pd.read_csv(manifest, keep_default_na=False, dtype=str).iloc[[0]]
    rows = rows.astype({"width": int, "height": int})
    write_manifest(rows, other / "manifest.csv")
    with pytest.raises(EvaluationError, match=r"other/manifest.csv: no row for image 'img1'"):
        evaluate(study["model"], cache_dir, resolution="native", manifest=other / "manifest.csv")


@pytest.fixture(scope="module")
def saved_results(study, result_aaa, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("evaluations")
    save_evaluation(result_aaa, folder / "model_AAA.json")
    save_evaluation(evaluate(study["model"], study["BBB"]), folder / "model_BBB.json")
    return [folder / "model_AAA.json", folder / "model_BBB.json"]


def test_aggregate_writes_the_long_table(study, saved_results, tmp_path):
    out = tmp_path / "tables" / "metrics.csv"
    info = {str(study["model"]): ("AAA+BBB", "uniform_soup")}
    returned = aggregate(saved_results, out, info)
    table = pd.read_csv(out)
    assert tuple(table.columns) == COLUMNS
    pd.testing.assert_frame_equal(table, returned, check_dtype=False)
    assert set(table["test_dataset"]) == {"AAA", "BBB"}
    assert set(table["train_combo"]) == {"AAA+BBB"} and set(table["method"]) == {"uniform_soup"}
    assert set(table["lesion"]) == {lesion.value for lesion in TRAINED}
    assert {"ap", "aupr_11pt", "auroc", "dice_pooled", "dice_image_mean", "ece"} <= set(
        table["metric"]
    )
    lesion_wise = {"lesion_sensitivity", "lesion_precision", "lesion_f1", "lesion_f1_small"}
    assert lesion_wise | {"lesion_f1_medium", "lesion_f1_large"} <= set(table["metric"])
    assert "lesion_wise" in json.loads(conventions_path(out).read_text())["conventions"]
    assert table[table["metric"] == "lesion_sensitivity"]["value"].notna().any()
    assert not table.duplicated(["model", "test_dataset", "lesion", "metric"]).any()
    for path in saved_results:
        result = load_evaluation(path)
        histograms = SegmentationHistograms.from_dict(result["histograms"])
        for lesion in TRAINED:
            rows = table[
                (table["test_dataset"] == result["test_dataset"])
                & (table["lesion"] == lesion.value)
            ].set_index("metric")["value"]
            assert rows["ap"] == pytest.approx(average_precision(histograms[lesion]))
            ece = expected_calibration_error(histograms[lesion])
            assert 0 <= rows["ece"] == pytest.approx(ece)
            assert rows["positive_pixels"] == histograms[lesion].positive_pixels
            reference, detected, predicted, matched = histograms[lesion].components.sum(axis=0)
            if reference:  # lesion-wise rows, from the evaluation's component counts
                assert rows["lesion_sensitivity"] == pytest.approx(detected / reference)
            if predicted:
                assert rows["lesion_precision"] == pytest.approx(matched / predicted)
            metrics = evaluation_metrics(result)[lesion.value]
            assert len(rows) == len(metrics)
            for name, value in metrics.items():
                assert rows[name] == pytest.approx(value, nan_ok=True) or (
                    math.isnan(value) and math.isnan(rows[name])
                )
    notes = json.loads(conventions_path(out).read_text())
    assert conventions_path(out).name == "metrics.conventions.json"
    assert notes["resolution"] == "cache" and "pooling" in notes["conventions"]
    assert notes["inference"] == [InferenceSettings().as_dict()]
    assert aggregated_evaluations(conventions_path(out)) == saved_results
    written = sorted(path.name for path in out.parent.iterdir())
    assert written == ["metrics.conventions.json", "metrics.csv"]


def test_model_table_round_trip(tmp_path):
    path = tmp_path / "models.json"
    save_model_table({"results/b.safetensors": ["IDRID", "greedy"], "a.json": ["DDR", "x"]}, path)
    assert path.read_text().startswith('{"a.json": ["DDR", "x"], ')
    assert load_model_table(path) == {
        "a.json": ("DDR", "x"),
        "results/b.safetensors": ("IDRID", "greedy"),
    }
    path.write_text('{"a.json": "DDR"}')
    with pytest.raises(EvaluationError, match="models.json: not a table of model"):
        load_model_table(path)


def test_aggregate_refuses_unknown_models_and_repeats(study, saved_results, tmp_path):
    out = tmp_path / "metrics.csv"
    with pytest.raises(EvaluationError, match="model_AAA.json: model .* has no train_combo"):
        aggregate(saved_results, out, {})
    info = {str(study["model"]): ("AAA", "single")}
    with pytest.raises(EvaluationError, match="model_AAA.json: evaluates .* as does"):
        aggregate([saved_results[0], saved_results[0]], out, info)
    coarse = load_evaluation(saved_results[1])
    coarse["histograms"] = SegmentationHistograms(TRAINED, bins=10).to_dict()
    save_evaluation(coarse, tmp_path / "coarse.json")
    with pytest.raises(EvaluationError, match=rf"mix bins \[10, {DEFAULT_BINS}\]"):
        aggregate([saved_results[0], tmp_path / "coarse.json"], out, info)
    with pytest.raises(ValueError, match="no evaluation files"):
        aggregate([], out, info)
    assert not out.exists()


def _hard_image(seed: int, bins: int, dtype: torch.dtype) -> tuple[torch.Tensor, np.ndarray]:
    """Probabilities full of bin edges, 0, 1 and their neighbours; labels with every bit mix."""
    rng = np.random.default_rng(seed)
    shape = (len(TRAINED), 48, 40)
    edges = np.arange(bins + 1) / bins
    special = np.concatenate(
        [
            edges,
            np.nextafter(edges.astype(np.float32), np.float32(0)),
            np.nextafter(edges.astype(np.float32), np.float32(1)),
            [0.0, 1.0, 0.5, 0.7, 0.9, 0.1],
        ]
    ).clip(0, 1)
    probs = np.where(rng.random(shape) < 0.5, rng.choice(special, shape), rng.random(shape))
    probs[rng.random(shape) < 0.05] = 1.0
    probs[rng.random(shape) < 0.05] = 0.0
    labels = rng.integers(0, 256, shape[1:], dtype=np.uint8)  # lesion, FOV and ignore bits
    invalid = ((labels & FOV_BIT) == 0) | ((labels & IGNORE_BIT) != 0)
    junk = rng.choice([np.nan, -3.0, 7.5, np.inf], shape)
    probs = np.where(invalid[None] & (rng.random(shape) < 0.5), junk, probs)
    return torch.from_numpy(probs).to(dtype), labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("bins", [DEFAULT_BINS, 1024, 10])
def test_device_binning_equals_the_numpy_binning_bit_for_bit(dtype, bins):
    """``bin_image`` (torch, here on the CPU) against ``LesionHistogram.update`` (NumPy)."""
    pooled = SegmentationHistograms(TRAINED, bins)
    for seed in range(3):
        probs, labels = _hard_image(seed, bins, dtype)
        exact = probs.to(torch.float64 if dtype == torch.float64 else torch.float32).numpy()
        expected = SegmentationHistograms(TRAINED, bins)
        expected.add_image(f"i{seed}", exact, labels)
        negatives, positives = bin_image(f"i{seed}", probs, labels, TRAINED, bins)
        assert negatives.dtype == positives.dtype == np.int64
        for index, lesion in enumerate(TRAINED):
            assert np.array_equal(positives[index], expected[lesion].positives)
            assert np.array_equal(negatives[index], expected[lesion].negatives)
        # a tensor given to add_image pools the same counts
        pooled.add_image(f"i{seed}", probs, torch.from_numpy(labels))
        for lesion in TRAINED:
            assert 0 < expected[lesion].positive_pixels < expected[lesion].valid_pixels
            assert expected[lesion].positives[-1] + expected[lesion].negatives[-1] > 0  # p == 1
    reference = SegmentationHistograms(TRAINED, bins)
    for seed in range(3):
        probs, labels = _hard_image(seed, bins, dtype)
        exact = probs.to(torch.float64 if dtype == torch.float64 else torch.float32).numpy()
        reference.add_image(f"i{seed}", exact, labels)
    assert pooled == reference


def test_device_binning_refuses_what_the_numpy_binning_refuses():
    probs = torch.rand(len(TRAINED), 8, 6, generator=torch.Generator().manual_seed(0))
    labels = np.full((8, 6), FOV_BIT, np.uint8)
    bin_image("img", probs, labels, TRAINED, 10)
    for value in (1.5, float("nan"), -0.25):
        bad = probs.clone()
        bad[1, 3, 4] = value
        with pytest.raises(ValueError, match=r"img HE: probabilities of valid pixels"):
            bin_image("img", bad, labels, TRAINED, 10)
        labels[3, 4] = 0  # outside the field of view, anything goes
        bin_image("img", bad, labels, TRAINED, 10)
        labels[3, 4] = FOV_BIT
    with pytest.raises(ValueError, match="floating point"):
        bin_image("img", (probs > 0.5).to(torch.uint8), labels, TRAINED, 10)
    with pytest.raises(ValueError, match="uint8 label plane"):
        bin_image("img", probs, labels.astype(np.int32), TRAINED, 10)
    histograms = SegmentationHistograms(TRAINED)
    with pytest.raises(ValueError, match=r"img: probabilities .* do not match"):
        histograms.add_image("img", probs[:2], labels)
    assert histograms == SegmentationHistograms(TRAINED)  # nothing pooled


def _without_timing(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("seconds", "fingerprint")}


def test_one_job_evaluates_a_model_on_every_test_set_loading_it_once(study, tmp_path, monkeypatch):
    loads = []
    real_load = per_model.load_predictor
    monkeypatch.setattr(per_model, "load_predictor", lambda *a: loads.append(a) or real_load(*a))
    tests = [EvaluationTarget(study[name], tmp_path / f"{name}.json") for name in ("AAA", "BBB")]
    assert evaluate_model(study["model"], tests, store=tmp_path / "store") == [False, False]
    assert len(loads) == 1
    for name, test in zip(("AAA", "BBB"), tests, strict=True):
        alone = evaluate(study["model"], study[name])
        assert _without_timing(load_evaluation(test.output)) == _without_timing(alone)
    # a rerun (Snakemake deleted the outputs) reuses both results without loading the model
    for test in tests:
        test.output.unlink()
    assert evaluate_model(study["model"], tests, store=tmp_path / "store") == [True, True]
    assert len(loads) == 1 and all(test.output.is_file() for test in tests)
    # other bins, or no store, evaluate again
    assert evaluate_model(study["model"], tests, store=tmp_path / "store", bins=100) == [False] * 2
    assert evaluate_model(study["model"], tests) == [False, False]
    assert len(loads) == 3


def test_a_changed_input_is_evaluated_again(study, tmp_path):
    store = tmp_path / "store"
    model = tmp_path / "model.safetensors"
    save_tiny(model, seed=0)
    aaa = tmp_path / "AAA"
    shutil.copytree(study["AAA"], aaa)
    bbb = study["BBB"]
    tests = [EvaluationTarget(cache, tmp_path / f"{i}.json") for i, cache in enumerate([aaa, bbb])]
    assert evaluate_model(model, tests, store=store) == [False, False]
    settings = json.loads((aaa / "cache.json").read_text())
    (aaa / "cache.json").write_text(json.dumps({**settings, "seed": 99}))  # a rebuilt cache
    assert evaluate_model(model, tests, store=store) == [False, True]
    save_tiny(model, seed=1)  # retrained weights under the same name
    assert evaluate_model(model, tests, store=store) == [False, False]
    settings = InferenceSettings(tta=("horizontal",))
    assert evaluate_model(model, tests, store=store, settings=settings) == [False, False]
    stored = sorted(store.iterdir())
    assert len(stored) == 7  # one entry per distinct fingerprint
    for entry in stored:
        entry.write_text("torn")  # an unreadable entry is evaluated again, not trusted
    assert evaluate_model(model, tests, store=store, settings=settings) == [False, False]
    with pytest.raises(ValueError, match="same result file"):
        evaluate_model(model, [tests[0], tests[0]], store=store)


def test_a_mask_fixed_in_a_rebuilt_cache_is_evaluated_again_not_taken_from_the_store(tmp_path):
    manifest = manifest_of(tmp_path, 2).assign(split="test")
    cache, rules = tmp_path / "cache", MaskRules(threshold=1)
    build_cache(manifest, cache, 64, rules, threads=1, progress=False)
    model, store = tmp_path / "model.safetensors", tmp_path / "store"
    save_tiny(model, seed=0)
    test = EvaluationTarget(cache, tmp_path / "result.json")
    assert evaluate_model(model, [test], store=store) == [False]
    before = _without_timing(load_evaluation(test.output))
    fixed = blank()  # the same file, the same photograph: the manifest does not change
    cv2.circle(fixed, (200, 120), 30, 255, -1)
    cv2.imwrite(manifest.loc[1, "mask_MA"], fixed)
    build_cache(manifest, cache, 64, rules, threads=1, progress=False)
    assert evaluate_model(model, [test], store=store) == [False]
    after = _without_timing(load_evaluation(test.output))
    assert after == _without_timing(evaluate(model, cache)) != before
