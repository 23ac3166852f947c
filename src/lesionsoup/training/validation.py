"""Validation during training: the score that picks a run's ``best`` checkpoint.

``ap`` (the default) is the mean over lesions of the pooled average precision
on the validation images; ``miou`` is the paper authors' val_mIoU: the mean
IoU over background and lesions of the argmax of a softmax head, against the
priority label map it is trained on. Merging (candidate scoring) and analysis
(connectivity curves) score models by ``ap``, so that every "validation score"
there means one thing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lesionsoup.core.lesions import IGNORE_BIT, unpack
from lesionsoup.core.metrics import SegmentationHistograms
from lesionsoup.core.model import predicted_classes
from lesionsoup.core.specs import ModelSpec
from lesionsoup.inference.infer import predict_whole
from lesionsoup.training.losses import priority_labels
from lesionsoup.training.sampling import ValidationImages


class ArgmaxConfusion:
    """Pixel counts of (reference class, argmax class) over background (0) and the lesions."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.counts = np.zeros((classes, classes), dtype=np.int64)

    def add(self, reference: np.ndarray, predicted: np.ndarray, counted: np.ndarray) -> None:
        """Count the pixels where ``counted`` is true."""
        pairs = reference[counted].astype(np.int64) * self.classes + predicted[counted]
        self.counts += np.bincount(pairs, minlength=self.classes**2).reshape(self.counts.shape)

    def mean_iou(self) -> float:
        """Mean IoU over the classes present in the reference or the prediction (NaN if none)."""
        true_positives = np.diag(self.counts)
        union = self.counts.sum(0) + self.counts.sum(1) - true_positives
        present = union > 0
        if not present.any():
            return float("nan")
        return float(np.mean(true_positives[present] / union[present]))


def reference_classes(labels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """The priority label map (0 = background) of a label plane, as the softmax head trains."""
    masks = torch.from_numpy(unpack(labels, spec.lesion_classes)[None])
    return priority_labels(masks, spec.lesion_classes)[0].numpy()


@torch.inference_mode()
def validate(
    model: torch.nn.Module,
    images: list[ValidationImages],
    spec: ModelSpec,
    bins: int,
    precision: str = "auto",
    monitor: str = "ap",
) -> dict[str, Any]:
    """Pooled average precision per lesion over the validation images, and ``score``: their
    mean (``monitor`` ap) or the argmax mean IoU (``monitor`` miou, also given as ``miou``).

    ``precision`` is the autocast of the forward passes (``lesionsoup.core.precision``).
    """
    if monitor == "miou" and spec.head != "softmax":
        raise ValueError("monitor miou scores the argmax of a softmax head; model.head is sigmoid")
    was_training = model.training
    model.eval()
    histograms = SegmentationHistograms(spec.lesion_classes, bins=bins)
    confusion = ArgmaxConfusion(len(spec.lesion_classes) + 1)
    for dataset in images:
        for item in dataset:
            probs = predict_whole(model, item.image[None], spec.head, precision)[0].cpu().numpy()
            labels = np.asarray(dataset.cache.labels(item.image_id))
            histograms.add_image(item.image_id, probs, labels)
            if monitor == "miou":
                counted = (labels & IGNORE_BIT) == 0
                confusion.add(reference_classes(labels, spec), predicted_classes(probs), counted)
    model.train(was_training)
    scores = {lesion: values["ap"] for lesion, values in histograms.metrics().items()}
    finite = [value for value in scores.values() if math.isfinite(value)]
    if monitor == "miou":
        miou = confusion.mean_iou()
        return {"score": miou, "miou": miou, **scores}
    return {"score": float(np.mean(finite)) if finite else float("nan"), **scores}
