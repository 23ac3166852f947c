"""``evaluation.labels: priority``: the priority map reference and the argmax Dice."""

import numpy as np
import pytest
import torch
from conftest import write_toy_cache
from support.predictor import save_tiny
from torchmetrics.functional.classification import multiclass_stat_scores

from lesionsoup.core.lesions import FOV_BIT, IGNORE_BIT, TRAINED, Lesion, priority_plane
from lesionsoup.core.metrics import (
    Confusion,
    ImageCounts,
    LesionHistogram,
    SegmentationHistograms,
    argmax_decisions,
    dice,
)
from lesionsoup.core.model import predicted_classes
from lesionsoup.evaluation import per_model
from lesionsoup.evaluation.evaluate import (
    EvaluationError,
    evaluate,
    evaluation_metrics,
    score_image,
)
from lesionsoup.evaluation.per_model import EvaluationTarget
from lesionsoup.evaluation.statistics import image_histograms_from_dict, resample_weights
from lesionsoup.inference.infer import DEFAULT_SETTINGS
from lesionsoup.training.losses import priority_labels

EX, HE = Lesion.EX, Lesion.HE


def test_priority_plane_on_a_hand_worked_case_and_as_the_softmax_loss_labels():
    labels = np.array([[EX.bit | HE.bit, Lesion.MA.bit | Lesion.CWS.bit, 0]], np.uint8) | FOV_BIT
    plane = priority_plane(labels)
    assert plane.tolist() == [[HE.bit | FOV_BIT, Lesion.MA.bit | FOV_BIT, FOV_BIT]]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 256, (2, 16, 16), dtype=np.uint8)
    for lesions in (TRAINED, (EX, Lesion.CWS)):
        target = torch.stack(
            [torch.from_numpy(((labels & x.bit) != 0).astype(np.float32)) for x in lesions], 1
        )
        index = priority_labels(target, lesions).numpy()
        plane = priority_plane(labels, lesions)
        for k, lesion in enumerate(lesions):
            assert np.array_equal((plane & lesion.bit) != 0, index == k + 1)
        other = np.uint8(0xFF & ~sum(x.bit for x in lesions))
        assert np.array_equal(plane & other, labels & other)  # other bits untouched


def test_argmax_dice_on_a_hand_worked_4x4_case():
    # EX on rows 0-1 x cols 0-1, HE on rows 1-2 x cols 1-2: (1, 1) is both, HE wins it
    labels = np.full((4, 4), FOV_BIT, np.uint8)
    labels[0:2, 0:2] |= EX.bit
    labels[1:3, 1:3] |= HE.bit
    labels[3, 0] |= IGNORE_BIT
    probs = np.full((2, 4, 4), 0.1, np.float32)  # background 0.8 wins by default
    for (row, col), (ex, he) in {
        (0, 0): (0.6, 0.1),  # EX: tp
        (0, 1): (0.4, 0.1),  # background 0.5 beats EX 0.4: EX fn
        (1, 0): (0.5, 0.4),  # EX: tp
        (1, 1): (0.3, 0.6),  # HE: tp (the map's HE, although EX's mask holds it too)
        (1, 2): (0.1, 0.7),  # HE: tp
        (2, 1): (0.1, 0.2),  # background 0.7: HE fn
        (2, 2): (0.5, 0.3),  # EX fp, HE fn
        (3, 3): (0.1, 0.55),  # HE fp
        (3, 0): (0.0, 0.9),  # ignored
    }.items():
        probs[:, row, col] = (ex, he)
    histograms = SegmentationHistograms((EX, HE), bins=1000)
    images = score_image(histograms, "case", probs, labels, priority=True)
    # 15 valid pixels; EX's reference is 3 pixels, HE's 4
    assert images[0].decisions == Confusion(tp=2, fp=1, fn=1, tn=11)
    assert images[1].decisions == Confusion(tp=2, fp=1, fn=2, tn=10)
    assert (images[0].positive_pixels, images[1].positive_pixels) == (3, 4)
    assert dice(images[0]) == pytest.approx(2 / 3) and dice(images[1]) == pytest.approx(4 / 7)
    counts = histograms.pool("case", images)
    assert counts[1] == ImageCounts("case", "HE", tp=2, fp=1, fn=2, tn=10)
    # the histogram still holds the lesion's probability: EX's positives at 0.6, 0.4, 0.5
    assert np.flatnonzero(images[0].positives).tolist() == [400, 500, 600]
    on_device = score_image(histograms, "case", torch.from_numpy(probs), labels, True)
    assert on_device == images
    # lesion-wise, of the argmax: EX's reference (0,0),(0,1),(1,0) is one lesion, hit by the
    # predicted (0,0),(1,0); the predicted (2,2) is false. HE's 2x2 lesion is hit by the
    # predicted (1,1),(1,2); the predicted (3,3) is false. Every component is small.
    for image in images:
        assert image.components.tolist() == [[1, 1, 2, 1], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_argmax_counts_equal_torchmetrics_multiclass_stat_scores():
    generator = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(5, 32, 32, generator=generator) * 2, 0)
    truth = torch.randint(0, 5, (32, 32), generator=generator)
    labels = np.full((32, 32), FOV_BIT, np.uint8)
    for k, lesion in enumerate(TRAINED):
        labels[truth.numpy() == k + 1] |= lesion.bit
    classes = predicted_classes(probs[1:])
    assert np.array_equal(classes, probs.argmax(0).numpy())
    ours = argmax_decisions(classes, priority_plane(labels), TRAINED)
    reference = multiclass_stat_scores(probs[None], truth[None], num_classes=5, average=None)
    for k, (tp, fp, tn, fn, _) in enumerate(reference[1:].tolist()):
        assert ours[k] == Confusion(tp, fp, fn, tn)


@pytest.fixture(scope="module")
def softmax_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labels")
    save_tiny(folder / "softmax.safetensors", seed=0, head="softmax")
    save_tiny(folder / "sigmoid.safetensors", seed=0)
    cache = write_toy_cache(folder / "AAA", "AAA", splits={"train": 1, "test": 3}, seed=4)
    return folder, cache


def test_per_image_counts_sum_to_the_pooled_counts_and_resample(softmax_study):
    folder, cache = softmax_study
    result = evaluate(folder / "softmax.safetensors", cache, labels="priority")
    assert result["labels"] == "priority" and "priority" in result["conventions"]["labels"]
    metrics = evaluation_metrics(result)
    images = image_histograms_from_dict(result["image_histograms"])
    weights = resample_weights(3, 4, seed=1)
    for lesion in TRAINED:
        rows = [c for c in result["per_image"] if c["lesion"] == lesion.value]
        summed = Confusion(*(sum(c[key] for c in rows) for key in ("tp", "fp", "fn", "tn")))
        pooled = LesionHistogram.from_dict(result["histograms"]["lesions"][lesion.value])
        assert pooled.decisions == summed
        expected = 2 * summed.tp / (2 * summed.tp + summed.fp + summed.fn)
        if 2 * summed.tp + summed.fp + summed.fn:
            assert metrics[lesion.value]["dice_pooled"] == pytest.approx(expected)
        per_image = np.array([[c[key] for key in ("tp", "fp", "fn", "tn")] for c in rows])
        for row, replicate in zip(weights, images[lesion.value].replicates(weights), strict=True):
            assert replicate.decisions == Confusion(*(row @ per_image))


def test_priority_refuses_a_sigmoid_model_naming_both_keys(softmax_study):
    folder, cache = softmax_study
    with pytest.raises(EvaluationError, match=r"evaluation.labels 'priority' needs model.head"):
        evaluate(folder / "sigmoid.safetensors", cache, labels="priority")


def test_the_store_key_changes_with_the_labels(softmax_study):
    folder, cache = softmax_study
    model = folder / "softmax.safetensors"
    keys = {
        labels: per_model.pair_fingerprint(
            model,
            "sha",
            EvaluationTarget(cache, folder / "out.json"),
            "test",
            DEFAULT_SETTINGS,
            2000,
            "cache",
            labels,
        )  # fmt: skip
        for labels in ("multilabel", "priority")
    }
    assert keys["multilabel"] != keys["priority"]
    assert keys["priority"]["labels"] == "priority"
