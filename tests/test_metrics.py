import json
import math

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from lesionsoup.core import metrics
from lesionsoup.core.lesions import FOV_BIT, IGNORE_BIT, Lesion, pack
from lesionsoup.core.metrics import (
    ELEVEN_POINT_THRESHOLDS,
    ImageCounts,
    LesionHistogram,
    SegmentationHistograms,
    aupr_11_point,
    auroc,
    average_precision,
    conventions,
    dice,
    per_image_metrics,
    pr_curve,
    precision_recall_at,
    valid_mask,
)


def binned_sample(
    seed: int, pixels: int, bins: int, prevalence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities whose bin is known by construction: (bin scores, probabilities, target).

    Scores run over 0..bins; score ``bins`` is the probability 1.0 exactly. Positives
    lean towards high scores so that the metrics are not all at chance.
    """
    rng = np.random.default_rng(seed)
    target = rng.random(pixels) < prevalence
    lean = np.where(target, rng.random(pixels), 0.0)
    scores = np.minimum(((rng.random(pixels) + lean) / 2 * (bins + 1)).astype(int), bins)
    probs = np.where(scores == bins, 1.0, (scores + rng.random(pixels) * 0.999) / bins)
    return scores, probs.reshape(1, -1), target.reshape(1, -1)


def histogram_of(probs: np.ndarray, target: np.ndarray, bins: int) -> LesionHistogram:
    histogram = LesionHistogram(bins)
    histogram.update(probs, target, np.ones_like(target))
    return histogram


CASES = [
    (seed, bins, prevalence)
    for seed in range(4)
    for bins in (2, 10, 37, 1000)
    for prevalence in (0.5, 0.01)
]


@pytest.mark.parametrize(("seed", "bins", "prevalence"), CASES)
def test_average_precision_equals_sklearn_on_binned_scores(seed, bins, prevalence):
    scores, probs, target = binned_sample(seed, 20_000, bins, prevalence)
    histogram = histogram_of(probs, target, bins)
    expected = average_precision_score(target.ravel(), scores)
    assert average_precision(histogram) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("seed", "bins", "prevalence"), CASES)
def test_auroc_equals_sklearn_on_binned_scores(seed, bins, prevalence):
    scores, probs, target = binned_sample(seed, 20_000, bins, prevalence)
    histogram = histogram_of(probs, target, bins)
    assert auroc(histogram) == pytest.approx(roc_auc_score(target.ravel(), scores), abs=1e-12)


@pytest.mark.parametrize("bins", [10, 1000])
def test_pr_curve_equals_sklearn_on_binned_scores(bins):
    scores, probs, target = binned_sample(7, 5_000, bins, 0.1)
    curve = pr_curve(histogram_of(probs, target, bins))
    precision, recall, thresholds = precision_recall_curve(target.ravel(), scores)
    np.testing.assert_allclose(curve.precision, precision[:-1], rtol=1e-12)
    np.testing.assert_allclose(curve.recall, recall[:-1], rtol=1e-12)
    np.testing.assert_allclose(curve.thresholds * bins, thresholds)


def eleven_point_direct(probs: np.ndarray, target: np.ndarray) -> float:
    probs = probs.astype(np.float64)  # compare with the exact thresholds, not float32 ones
    precision, recall = [], []
    for threshold in ELEVEN_POINT_THRESHOLDS:
        predicted = probs >= threshold
        tp = np.sum(predicted & target)
        precision.append(tp / predicted.sum() if predicted.any() else 1.0)
        recall.append(tp / target.sum())
    return auc(recall, precision)


@pytest.mark.parametrize("seed", range(6))
def test_eleven_point_aupr_equals_direct_computation_on_raw_scores(seed):
    rng = np.random.default_rng(seed)
    target = rng.random((3, 40, 40)) < 0.05
    probs = (rng.random(target.shape) ** np.where(target, 0.3, 3)).astype(np.float32)
    # values exactly on the thresholds, and saturated sigmoids at 1.0
    edges = np.array(ELEVEN_POINT_THRESHOLDS, np.float32)
    probs.flat[rng.choice(probs.size, 400, replace=False)] = rng.choice(edges, 400)
    histogram = histogram_of(probs, target, metrics.DEFAULT_BINS)
    assert aupr_11_point(histogram) == pytest.approx(eleven_point_direct(probs, target), abs=1e-12)


def test_eleven_point_precision_is_one_where_nothing_is_predicted():
    probs = np.array([[0.05, 0.15, 0.95]])
    target = np.array([[False, True, True]])
    precision, recall = precision_recall_at(histogram_of(probs, target, 10), [1.0, 0.9, 0.0])
    np.testing.assert_allclose(precision, [1.0, 1.0, 2 / 3])
    np.testing.assert_allclose(recall, [0.0, 0.5, 1.0])


def test_pooled_dice_equals_direct_computation():
    rng = np.random.default_rng(3)
    target = rng.random((2, 30, 30)) < 0.2
    probs = np.clip(rng.normal(np.where(target, 0.6, 0.3), 0.2), 0, 1)
    valid = rng.random(target.shape) < 0.8
    histogram = LesionHistogram()
    histogram.update(probs, target, valid)
    predicted = (probs >= 0.5) & valid
    tp = np.sum(predicted & target)
    expected = 2 * tp / (predicted.sum() + np.sum(target & valid))
    assert dice(histogram) == pytest.approx(expected, rel=1e-12)


def label_plane(rng: np.random.Generator, size: int, lesions: dict[Lesion, float]) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    fov = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2.2) ** 2
    masks = {lesion: rng.random((size, size)) < share for lesion, share in lesions.items()}
    return pack(masks, fov, ignore=rng.random((size, size)) < 0.05)


def test_add_image_counts_per_image_dice_and_false_positive_rate():
    rng = np.random.default_rng(11)
    lesions = (Lesion.EX, Lesion.MA)
    histograms = SegmentationHistograms(lesions)
    images = [label_plane(rng, 48, {Lesion.EX: 0.1, Lesion.MA: 0.0}) for _ in range(3)]
    all_counts = []
    for index, labels in enumerate(images):
        probs = rng.random((2, 48, 48)).astype(np.float32)
        counts = histograms.add_image(f"img{index}", probs, labels)
        valid = ((labels & FOV_BIT) > 0) & ((labels & IGNORE_BIT) == 0)
        for channel, lesion in enumerate(lesions):
            target = (labels & lesion.bit) > 0
            predicted = probs[channel] >= 0.5
            tp = np.sum(predicted & target & valid)
            fp = np.sum(predicted & ~target & valid)
            fn = np.sum(~predicted & target & valid)
            assert counts[channel] == ImageCounts(
                f"img{index}", lesion.value, tp, fp, fn, valid.sum() - tp - fp - fn
            )
        all_counts += counts
    ex_dice = [c.dice for c in all_counts if c.lesion == "EX"]
    ma_fp_rate = [c.fp / c.valid for c in all_counts if c.lesion == "MA"]
    values = histograms.metrics(all_counts)
    assert values["EX"]["dice_image_mean"] == pytest.approx(np.mean(ex_dice))
    assert values["EX"]["images_with_lesion"] == 3
    assert math.isnan(values["EX"]["fp_rate_image_mean"])
    assert values["MA"]["fp_rate_image_mean"] == pytest.approx(np.mean(ma_fp_rate))
    assert values["MA"]["images_without_lesion"] == 3
    assert math.isnan(values["MA"]["dice_image_mean"])


def test_per_image_dice_skips_images_without_the_lesion():
    counts = [
        ImageCounts("a", "HE", tp=3, fp=1, fn=1, tn=95),
        ImageCounts("b", "HE", tp=0, fp=10, fn=0, tn=90),
        ImageCounts("c", "HE", tp=0, fp=0, fn=0, tn=0),
    ]
    result = per_image_metrics(counts)
    assert result["dice_image_mean"] == pytest.approx(6 / 8)
    assert result["fp_rate_image_mean"] == pytest.approx(0.1)
    assert (result["images_with_lesion"], result["images_without_lesion"]) == (1, 1)
    with pytest.raises(ValueError, match="mix lesions"):
        per_image_metrics([*counts, ImageCounts("d", "EX", 1, 0, 0, 0)])


def test_valid_mask_excludes_ignored_and_out_of_view_pixels():
    labels = np.array([[FOV_BIT, FOV_BIT | IGNORE_BIT, 0, IGNORE_BIT, FOV_BIT | Lesion.EX.bit]])
    np.testing.assert_array_equal(valid_mask(labels.astype(np.uint8)), [[1, 0, 0, 0, 1]])


def test_invalid_pixels_change_nothing():
    rng = np.random.default_rng(5)
    labels = label_plane(rng, 40, {Lesion.HE: 0.2})
    probs = rng.random((1, 40, 40))
    reference = SegmentationHistograms([Lesion.HE])
    reference_counts = reference.add_image("x", probs, labels)
    invalid = ~valid_mask(labels)
    assert invalid.sum() > 100
    changed = probs.copy()
    changed[0][invalid] = rng.choice([0.0, 1.0, np.nan, -3.0, 7.0], invalid.sum())
    other = SegmentationHistograms([Lesion.HE])
    assert other.add_image("x", changed, labels) == reference_counts
    assert other == reference
    assert reference["HE"].valid_pixels == np.sum(~invalid)


def test_merging_equals_one_shot_accumulation(monkeypatch):
    monkeypatch.setattr(metrics, "_CHUNK_PIXELS", 777)  # exercise chunk boundaries
    rng = np.random.default_rng(2)
    probs = rng.random((4, 50, 50)).astype(np.float32)
    target = rng.random(probs.shape) < 0.1
    valid = rng.random(probs.shape) < 0.9
    one_shot = LesionHistogram(100)
    one_shot.update(probs, target, valid)
    parts = []
    for index in range(4):
        part = LesionHistogram(100)
        part.update(probs[index], target[index], valid[index])
        parts.append(part)
    merged = parts[0] + parts[1] + parts[2] + parts[3]
    assert merged == one_shot
    assert merged.valid_pixels == valid.sum()
    assert merged.positive_pixels == np.sum(target & valid)


def test_an_image_listed_twice_counts_twice():
    rng = np.random.default_rng(8)
    probs_a, probs_b = rng.random((2, 1, 60, 60))
    labels_a = label_plane(rng, 60, {Lesion.EX: 0.02})
    labels_b = label_plane(rng, 60, {Lesion.EX: 0.3})
    once = SegmentationHistograms([Lesion.EX])
    once.add_image("a", probs_a, labels_a)
    image_a = SegmentationHistograms([Lesion.EX])
    image_a.add_image("a", probs_a, labels_a)
    twice = SegmentationHistograms([Lesion.EX])
    for image_id, probs, labels in [("a", probs_a, labels_a), ("a", probs_a, labels_a)]:
        twice.add_image(image_id, probs, labels)
    doubled = image_a["EX"] + image_a["EX"]
    assert twice["EX"] == doubled
    np.testing.assert_array_equal(doubled.positives, 2 * image_a["EX"].positives)
    once.add_image("b", probs_b, labels_b)
    twice.add_image("b", probs_b, labels_b)
    # pooling weighs images by their pixels, so a duplicate shifts the pooled AP
    assert average_precision(twice["EX"]) != pytest.approx(average_precision(once["EX"]))


def test_json_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    histograms = SegmentationHistograms(["EX", "HE", "MA", "CWS"], bins=20)
    labels = label_plane(rng, 32, {Lesion.EX: 0.1, Lesion.HE: 0.1, Lesion.MA: 0.01})
    histograms.add_image("i", rng.random((4, 32, 32)), labels)
    path = tmp_path / "histograms.json"
    histograms.save(path)
    loaded = SegmentationHistograms.load(path)
    assert loaded == histograms
    assert loaded.lesions == histograms.lesions
    assert json.loads(path.read_text())["lesions"]["EX"]["positives"] == (
        histograms["EX"].positives.tolist()
    )
    assert [p.name for p in tmp_path.iterdir()] == ["histograms.json"]
    single = histograms["HE"]
    assert LesionHistogram.from_dict(json.loads(json.dumps(single.to_dict()))) == single


def test_no_positive_pixels():
    probs = np.array([[0.1, 0.7, 0.2]])
    histogram = histogram_of(probs, np.zeros((1, 3), bool), 10)
    for metric in (average_precision, aupr_11_point, auroc):
        assert math.isnan(metric(histogram))
    assert dice(histogram) == 0.0
    assert math.isnan(dice(histogram_of(np.array([[0.1, 0.2]]), np.zeros((1, 2), bool), 10)))
    assert ImageCounts("x", "EX", 0, 1, 0, 2).fp_rate == pytest.approx(1 / 3)
    assert math.isnan(ImageCounts("x", "EX", 0, 1, 0, 2).dice)


def test_bad_input_is_refused_with_a_clear_message(tmp_path):
    histogram = LesionHistogram(10)
    ones = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        histogram.update(np.full((4, 4), 1.5), ones, ones)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        histogram.update(np.full((4, 4), np.nan), ones, ones)
    with pytest.raises(TypeError, match="target must be a boolean"):
        histogram.update(np.zeros((4, 4)), ones.astype(np.uint8), ones)
    with pytest.raises(TypeError, match="floating point"):
        histogram.update(np.zeros((4, 4), np.uint8), ones, ones)
    with pytest.raises(ValueError, match="valid shape"):
        histogram.update(np.zeros((4, 4)), ones, ones[:2])
    with pytest.raises(ValueError, match="cannot merge"):
        _ = histogram + LesionHistogram(20)
    with pytest.raises(ValueError, match="not a bin edge"):
        LesionHistogram(1024).confusion(0.1)
    with pytest.raises(ValueError, match="bins must be"):
        LesionHistogram(1)
    with pytest.raises(ValueError, match="11 integer counts"):
        LesionHistogram.from_dict({"bins": 10, "positives": [0] * 3, "negatives": [0] * 11})
    histograms = SegmentationHistograms(["EX"], bins=10)
    with pytest.raises(ValueError, match=r"img7: probabilities \(2, 4, 4\)"):
        histograms.add_image("img7", np.zeros((2, 4, 4)), np.zeros((4, 4), np.uint8))
    broken = tmp_path / "broken.json"
    broken.write_text('{"bins": 10, "lesions": {"EX": {"bins": 10}}}')
    with pytest.raises(ValueError, match="broken.json"):
        SegmentationHistograms.load(broken)


def test_conventions_state_every_rule():
    text = conventions(1000)
    assert {"pooling", "aupr_11_point", "per_image", "bins", "dice_pooled"} <= set(text)
    assert "1000" in text["bins"]
    assert "1.0" in text["aupr_11_point"]
