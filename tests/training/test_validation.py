"""The validation scores: the argmax mean IoU against torchmetrics and a hand-worked case."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from lesionsoup.core.lesions import FOV_BIT, IGNORE_BIT, Lesion
from lesionsoup.core.model import predicted_classes
from lesionsoup.core.specs import ModelSpec
from lesionsoup.training.validation import ArgmaxConfusion, reference_classes

SPEC = ModelSpec(
    encoder="resnet18",
    encoder_weights=None,
    encoder_depth=3,
    decoder_channels=(16, 8, 4),
    head="softmax",
)


def test_priority_reference_and_argmax_on_a_hand_worked_case():
    """A 2x2 plane: background, EX alone, EX + MA (MA wins), HE + CWS (HE wins)."""
    labels = np.array(
        [[0, Lesion.EX.bit], [Lesion.EX.bit | Lesion.MA.bit, Lesion.HE.bit | Lesion.CWS.bit]],
        dtype=np.uint8,
    )
    index = {lesion.value: i + 1 for i, lesion in enumerate(SPEC.lesion_classes)}
    assert reference_classes(labels | FOV_BIT, SPEC).tolist() == [
        [0, index["EX"]],
        [index["MA"], index["HE"]],
    ]
    probs = np.zeros((4, 2, 2))
    probs[:, 0, 0] = [0.2, 0.1, 0.1, 0.1]  # background 0.5: background wins
    probs[index["HE"] - 1, 0, 1] = 0.6
    probs[index["MA"] - 1, 1, 0] = 0.45  # background 0.55: background wins
    probs[index["HE"] - 1, 1, 1] = 0.9
    assert predicted_classes(probs).tolist() == [[0, index["HE"]], [0, index["HE"]]]


def test_mean_iou_equals_torchmetrics_macro_jaccard():
    rng = np.random.default_rng(0)
    confusion = ArgmaxConfusion(5)
    references, predictions = [], []
    for _ in range(3):
        reference = rng.integers(0, 4, size=(16, 16))  # class 4 never in the reference
        predicted = rng.integers(0, 4, size=(16, 16))  # nor predicted: left out of the mean
        confusion.add(reference, predicted, np.ones_like(reference, dtype=bool))
        references.append(reference)
        predictions.append(predicted)
    metric = MulticlassJaccardIndex(num_classes=5, average="macro")
    expected = metric(torch.tensor(np.stack(predictions)), torch.tensor(np.stack(references)))
    assert np.isclose(confusion.mean_iou(), float(expected))


def test_ignored_pixels_are_not_counted():
    confusion = ArgmaxConfusion(2)
    reference = np.array([[1, 1], [0, 0]])
    predicted = np.array([[1, 0], [0, 0]])
    labels = np.array([[0, IGNORE_BIT], [0, 0]], dtype=np.uint8)
    confusion.add(reference, predicted, (labels & IGNORE_BIT) == 0)
    assert confusion.mean_iou() == 1.0  # the one miss is ignored
    assert np.isnan(ArgmaxConfusion(3).mean_iou())
