"""Linear mode connectivity: how two checkpoints' models behave on the straight path between them.

For each ``lam`` on a grid over [0, 1] the soup ``(1 - lam) * a + lam * b`` is
built exactly as a merged model is (``merging.soups.Merger.build``: weights
averaged, then a BatchNorm policy of ``core.merge_rules.BN_POLICIES`` applied
by the routine the soups use, ``merging.batchnorm``), and scored on the
validation images: the held-out score of ``train.validate`` (pooled AP, mean
over lesions) and the mean training loss (Dice + BCE/CE) per image.

BatchNorm policies: ``average`` interpolates the running statistics like the
weights; ``recompute`` re-estimates them at each point over the augmented
training patches of ``BatchNormSample`` (one epoch-equivalent by default),
drawn with the training settings of the first endpoint that records them (a
merged model's are its first ingredient's); ``copy-best`` takes them from
the endpoint that scores better alone (each endpoint keeps its own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lesionsoup.core.checkpoint import StateDict, load_metadata
from lesionsoup.core.merge_rules import DEFAULT_PART, BatchNormPolicy, BatchNormSample, Part
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import ModelSpec, TrainSettings
from lesionsoup.data.cache import Cache
from lesionsoup.inference.predictor import spec_of
from lesionsoup.merging.batchnorm import batchnorm_recompute
from lesionsoup.merging.held_out import settings_of
from lesionsoup.merging.soups import Merger
from lesionsoup.training.losses import LossWeights, segmentation_loss
from lesionsoup.training.sampling import ValidationImages
from lesionsoup.training.validation import validate

CURVE_COLUMNS = ("lam", "score", "loss")


def lambdas(points: int) -> np.ndarray:
    if points < 2:
        raise ValueError(f"a connectivity curve needs >= 2 points, got {points}")
    return np.linspace(0.0, 1.0, points)


@torch.inference_mode()
def validation_loss(
    model: torch.nn.Module, images: Sequence[ValidationImages], spec: ModelSpec
) -> float:
    """Mean loss over whole validation images (the training loss, unit weights)."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    losses = [
        float(
            segmentation_loss(
                model(item.image[None].to(device)),
                item.target[None].to(device),
                item.valid[None].to(device),
                LossWeights(),
                spec.head,
                spec.lesion_classes,
            )
        )
        for dataset in images
        for item in dataset
    ]
    model.train(was_training)
    return float(np.mean(losses))


def recorded_settings(checkpoints: Sequence[Path]) -> TrainSettings:
    """The training settings of the first checkpoint that records them, a merged model's
    being those of its first ingredient."""
    for path in checkpoints:
        metadata = load_metadata(path)
        if "hyperparameters" in metadata:
            return settings_of(metadata)
        if metadata.get("ingredients"):
            return recorded_settings([Path(metadata["ingredients"][0])])
    raise ValueError(f"{', '.join(map(str, checkpoints))}: no training settings recorded")


def connectivity_curve(
    checkpoint_a: Path,
    checkpoint_b: Path,
    caches: Mapping[str, Cache],
    points: int = 11,
    bn_policy: BatchNormPolicy = "average",
    bn_sample: BatchNormSample = BatchNormSample(),  # noqa: B008 (frozen)
    split: str = "valid",
    bins: int = 1000,
    device: str | torch.device = "cpu",
    part: Part = DEFAULT_PART,
) -> pd.DataFrame:
    """Score and loss along the path from ``checkpoint_a`` (lam 0) to ``checkpoint_b`` (lam 1);
    for a ``part`` (encoder or decoder) only that part moves, the rest stays A's, as in a
    part soup anchored on A."""
    pair = [Path(checkpoint_a), Path(checkpoint_b)]
    metadata = load_metadata(pair[0])
    spec = spec_of(pair[0], metadata)  # its weights replace any pretrained encoder's
    model = build_model(spec).to(device)
    images = [ValidationImages(cache, split, spec.lesion_classes) for cache in caches.values()]

    def score(state: StateDict) -> float:
        model.load_state_dict(state)
        return validate(model, images, spec, bins)["score"]

    recompute = (
        batchnorm_recompute(caches, spec, recorded_settings(pair), bn_sample, device)
        if bn_policy == "recompute"
        else None
    )
    anchor = None if part == DEFAULT_PART else pair[0]
    merger = Merger(
        pair, bn_policy=bn_policy, scorer=score, recompute=recompute, part=part, anchor=anchor
    )
    rows = []
    for lam in lambdas(points):
        state = merger.build({pair[0]: 1.0 - float(lam), pair[1]: float(lam)})
        rows.append((float(lam), score(state), validation_loss(model, images, spec)))
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def barrier(curve: pd.DataFrame, column: str = "score", higher_is_better: bool = True) -> float:
    """How far ``column`` gets worse than the straight line between the endpoints (0: never).

    For a score that is the largest drop below the chord, for a loss the largest rise above it.
    """
    lam, values = curve["lam"].to_numpy(), curve[column].to_numpy()
    chord = values[0] + (values[-1] - values[0]) * lam
    worse = chord - values if higher_is_better else values - chord
    return float(max(0.0, np.max(worse)))
