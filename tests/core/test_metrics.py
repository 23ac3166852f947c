import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score
from torchmetrics.functional.classification import binary_precision_recall_curve
from torchmetrics.utilities.compute import auc as torchmetrics_auc

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
    return auc([*recall, 0.0], [*precision, 1.0])


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


def torchmetrics_curve(probs: np.ndarray, target: np.ndarray) -> tuple[torch.Tensor, ...]:
    """torchmetrics' 11-threshold PR curve (end point appended) of float32 probabilities."""
    return binary_precision_recall_curve(
        torch.from_numpy(probs.astype(np.float32).ravel()),
        torch.from_numpy(target.astype(np.int64).ravel()),
        thresholds=11,
    )[:2]


def torchmetrics_aupr(probs: np.ndarray, target: np.ndarray) -> float:
    """``auc`` of torchmetrics' curve; precision NaN (nothing predicted, >= 1.8.2) read as 1."""
    precision, recall = torchmetrics_curve(probs, target)
    return float(torchmetrics_auc(recall, precision.nan_to_num(1.0)))


def authors_aupr(probs: np.ndarray, target: np.ndarray) -> float:
    """The paper's code: torchmetrics < 1.8.2 (precision 0 where nothing is predicted),
    points sorted by recall, then ``torch.trapezoid`` (a stable sort for a defined order)."""
    precision, recall = torchmetrics_curve(probs, target)
    order = torch.sort(recall, stable=True).indices
    return float(torch.trapezoid(precision.nan_to_num(0.0)[order], recall[order]))


def pixels(seed: int, size: int = 200_000, prevalence: float = 0.1) -> tuple[np.ndarray, ...]:
    """Float32 probabilities of a fair model: positives lean high, negatives low."""
    rng = np.random.default_rng(seed)
    target = rng.random(size) < prevalence
    probs = np.where(target, rng.beta(3, 1.5, size), rng.beta(1, 6, size))
    return probs.astype(np.float32), target


def aupr_of(probs: np.ndarray, target: np.ndarray, bins: int = metrics.DEFAULT_BINS) -> float:
    return aupr_11_point(histogram_of(probs, target, bins))


@pytest.mark.parametrize("saturated", [0.0, 0.1, 0.3])
def test_eleven_point_aupr_equals_torchmetrics_on_saturated_probabilities(saturated):
    probs, target = pixels(0)
    rng = np.random.default_rng(1)
    positives = np.flatnonzero(target)
    probs[rng.choice(positives, int(saturated * positives.size), replace=False)] = 1.0
    expected = torchmetrics_aupr(probs, target)
    assert aupr_of(probs, target) == pytest.approx(expected, abs=1e-6)
    assert aupr_of(probs, target) == pytest.approx(authors_aupr(probs, target), abs=1e-6)
    # more confidence on true lesion pixels never lowers the score
    assert aupr_of(probs, target) >= torchmetrics_aupr(*pixels(0)) - 1e-9


def test_eleven_point_aupr_equals_torchmetrics_with_saturated_negatives():
    probs, target = pixels(2, 50_000)
    rng = np.random.default_rng(3)
    probs[rng.choice(probs.size, 2_000, replace=False)] = 1.0
    assert aupr_of(probs, target) == pytest.approx(torchmetrics_aupr(probs, target), abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_eleven_point_aupr_equals_torchmetrics_on_ties(seed):
    # few distinct values, on the thresholds and between them; float32(0.7) and float32(0.9)
    # are left out: torchmetrics counts them as >= 0.7 and 0.9 (see the next test)
    rng = np.random.default_rng(seed)
    values = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.35, 0.5, 0.6, 0.8, 0.85, 0.95, 1.0], np.float32)
    target = rng.random(30_000) < 0.2
    rank = np.clip(rng.normal(np.where(target, 8, 3), 2.5).round(), 0, values.size - 1)
    probs = values[rank.astype(int)]
    assert aupr_of(probs, target) == pytest.approx(torchmetrics_aupr(probs, target), abs=1e-6)


@pytest.mark.parametrize("bins", [1030, metrics.DEFAULT_BINS])
def test_bin_edges_split_float32_neighbours_of_each_threshold_as_torchmetrics(bins):
    # each threshold, and the float32 values just below and above it, land on the side of
    # "p >= t" that torchmetrics puts them (float32(0.7) and float32(0.9) aside, see below)
    edges = np.array(ELEVEN_POINT_THRESHOLDS, np.float32)
    below, above = np.nextafter(edges, np.float32(0)), np.nextafter(edges, np.float32(1))
    values = np.concatenate([np.delete(edges, [7, 9]), below[1:], above[:-1]])
    rng = np.random.default_rng(0)
    probs = np.repeat(values, 7)
    target = rng.random(probs.size) < 0.5
    precision, recall = precision_recall_at(
        histogram_of(probs, target, bins), ELEVEN_POINT_THRESHOLDS
    )
    reference_precision, reference_recall = torchmetrics_curve(probs, target)
    np.testing.assert_allclose(recall, reference_recall[:-1].numpy(), rtol=1e-6)
    np.testing.assert_allclose(precision, reference_precision[:-1].nan_to_num(1.0), rtol=1e-6)


def test_float32_seven_tenths_is_below_the_threshold_here_but_not_in_torchmetrics():
    probs = np.array([0.7, 0.7, 0.2], np.float32)  # float32(0.7) = 0.69999999...
    target = np.array([True, False, True])
    precision, recall = precision_recall_at(histogram_of(probs, target, 2000), [0.7])
    reference_precision, reference_recall = torchmetrics_curve(probs, target)
    assert (precision[0], recall[0]) == (1.0, 0.0)  # nothing predicted: 0.69999999 < 0.7
    assert (float(reference_precision[7]), float(reference_recall[7])) == (0.5, 0.5)


@pytest.mark.parametrize("seed", range(3))
def test_eleven_point_aupr_equals_torchmetrics_with_all_negative_and_all_positive_images(seed):
    rng = np.random.default_rng(seed)
    probs = rng.random((6, 64, 64)).astype(np.float32) ** 2
    target = rng.random(probs.shape) < 0.05
    target[1] = False  # an image without the lesion
    target[2] = True  # an image that is all lesion
    probs[2] = np.maximum(probs[2], 0.6)
    probs[3][target[3]] = 1.0
    assert aupr_of(probs, target) == pytest.approx(torchmetrics_aupr(probs, target), abs=1e-6)
    # the lesion-only image alone: precision 1 wherever something is predicted
    assert aupr_of(probs[2], target[2]) == pytest.approx(torchmetrics_aupr(probs[2], target[2]))
    assert aupr_of(probs[2], target[2]) == pytest.approx(1.0)
    # the image without the lesion alone: recall undefined, NaN in both
    assert math.isnan(aupr_of(probs[1], target[1]))
    assert math.isnan(torchmetrics_aupr(probs[1], target[1]))


@pytest.mark.parametrize("seed", range(5))
def test_eleven_point_aupr_equals_torchmetrics_on_random_pixels(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1_000, 60_000))
    target = rng.random(size) < rng.uniform(0.001, 0.5)
    probs = rng.random(size).astype(np.float32) ** np.where(target, rng.uniform(0.1, 1), 2)
    for bins in (1030, 2000):
        expected = torchmetrics_aupr(probs, target)
        assert aupr_of(probs, target, bins) == pytest.approx(expected, abs=1e-6)


def test_eleven_point_aupr_keeps_threshold_order_where_recall_ties():
    # no positive at or above 0.3 but a negative at 0.35: recall 0 at 0.3 with something
    # predicted; the curve goes (R(0.2), P(0.2)) -> (0, 0) -> ... -> (0, 1)
    probs = np.array([0.25, 0.25, 0.15, 0.35], np.float32)
    target = np.array([True, False, True, False])
    # trapezoids: 0.0..0.1 recall 1 flat; 0.1 -> 0.2: (1 - 0.5)(2/4 + 1/3)/2; 0.2 -> 0.3
    # (P 0): 0.5 * (1/3 + 0) / 2; the authors' sort joins (0, 1) to (0.5, 1/3) instead
    expected = 0.5 * (0.5 + 1 / 3) / 2 + 0.5 * (1 / 3) / 2
    assert aupr_of(probs, target) == pytest.approx(expected)
    assert aupr_of(probs, target) == pytest.approx(torchmetrics_aupr(probs, target))
    assert authors_aupr(probs, target) == pytest.approx(expected + 0.5 / 2)


def ap_binning_bound(histogram: LesionHistogram) -> float:
    """A bound on |AP(binned) - AP(raw scores)|: sum over bins k of (P_k / P)(m_k - 1) / C_k.

    A positive in bin k has, on the raw scores, the precision of c = C_(k+1) + x + y pixels
    (those above its bin and the x + y >= 1 of its bin at or above it); binned, of all
    C_k = C_(k+1) + m_k. The two precisions differ by at most (m_k - x - y) / C_k <=
    (m_k - 1) / C_k. The bin of p == 1.0 holds one score and adds nothing.
    """
    counts = (histogram.positives + histogram.negatives)[:-1]
    above = np.cumsum((histogram.positives + histogram.negatives)[::-1])[::-1][:-1]
    spread = np.maximum(counts - 1, 0) / np.maximum(above, 1)
    return float(np.sum(histogram.positives[:-1] * spread) / histogram.positive_pixels)


@pytest.mark.parametrize("bins", [1030, metrics.DEFAULT_BINS])  # the schema's minimum, default
@pytest.mark.parametrize("saturated", [0.0, 0.3])
def test_average_precision_is_within_the_binning_bound_of_sklearn_on_raw_scores(bins, saturated):
    probs, target = pixels(5)
    positives = np.flatnonzero(target)
    probs[positives[: int(saturated * positives.size)]] = 1.0
    histogram = histogram_of(probs, target, bins)
    error = abs(average_precision(histogram) - average_precision_score(target, probs))
    bound = ap_binning_bound(histogram)
    assert error <= bound
    # measured: error 1e-4 (2000 bins) to 3e-4 (1030), bound 1e-3 to 9e-3
    assert bound < 0.01 and error < 5e-4


def test_the_binning_bound_holds_where_bins_hide_a_perfect_ordering():
    # within each bin every positive lies above every negative: the worst case for binning
    rng = np.random.default_rng(9)
    target = rng.random(100_000) < 0.1
    lower_edge = rng.integers(0, 2000, target.size)
    probs = ((lower_edge + np.where(target, 0.9, 0.1)) / 2000).astype(np.float32)
    histogram = histogram_of(probs, target, 2000)
    error = abs(average_precision(histogram) - average_precision_score(target, probs))
    assert 0 < error <= ap_binning_bound(histogram)


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


def test_every_metric_of_metrics_csv_has_a_label():
    histograms = SegmentationHistograms(["EX"], bins=10)
    counts = histograms.add_image("i", np.full((1, 4, 4), 0.7), np.full((4, 4), FOV_BIT, np.uint8))
    names = set(histograms.metrics(counts)["EX"])
    assert set(metrics.METRIC_LABELS) == names
    assert metrics.metric_label("aupr_11pt") == "AUPR (11-point)"
    assert metrics.metric_label("other") == "other"
