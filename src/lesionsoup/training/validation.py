"""Validation during training: pooled average precision on the validation images.

Merging (candidate scoring) and analysis (connectivity curves) score models the
same way, so that every "validation score" in the study means one thing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lesionsoup.core.metrics import SegmentationHistograms
from lesionsoup.core.specs import ModelSpec
from lesionsoup.inference.infer import predict_whole
from lesionsoup.training.sampling import ValidationImages


@torch.inference_mode()
def validate(
    model: torch.nn.Module,
    images: list[ValidationImages],
    spec: ModelSpec,
    bins: int,
    precision: str = "auto",
) -> dict[str, Any]:
    """Pooled average precision per lesion over the validation images; mean = score.

    ``precision`` is the autocast of the forward passes (``lesionsoup.core.precision``).
    """
    was_training = model.training
    model.eval()
    histograms = SegmentationHistograms(spec.lesion_classes, bins=bins)
    for dataset in images:
        for item in dataset:
            probs = predict_whole(model, item.image[None], spec.head, precision)[0].cpu().numpy()
            labels = np.asarray(dataset.cache.labels(item.image_id))
            histograms.add_image(item.image_id, probs, labels)
    model.train(was_training)
    scores = {lesion: values["ap"] for lesion, values in histograms.metrics().items()}
    finite = [value for value in scores.values() if math.isfinite(value)]
    return {"score": float(np.mean(finite)) if finite else float("nan"), **scores}
