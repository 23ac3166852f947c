"""Linear mode connectivity: how two checkpoints' models behave on the straight path between them.

For each ``lam`` on a grid over [0, 1] the model ``(1 - lam) * a + lam * b`` is
built (``merge.interpolate``), its BatchNorm statistics set by a policy, and
scored on the validation images: the held-out score of ``train.validate``
(pooled AP, mean over lesions) and the mean training loss (Dice + BCE/CE) per image.

BatchNorm policies: ``average`` interpolates the running statistics like the
weights; ``recompute`` re-estimates them at each point over a fixed set of
training patches (``merge.recompute_bn``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from lesionsoup.core.checkpoint import load_checkpoint
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import ModelSpec
from lesionsoup.data.cache import Cache
from lesionsoup.merging.averaging import check_compatible, interpolate
from lesionsoup.merging.batchnorm import recompute_bn
from lesionsoup.training.augment import build_augmentation
from lesionsoup.training.losses import LossWeights, segmentation_loss
from lesionsoup.training.sampling import PatchDataset, PatchSampler, ValidationImages
from lesionsoup.training.validation import validate

ConnectivityPolicy = Literal["average", "recompute"]
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
    was_training = model.training
    model.eval()
    losses = [
        float(
            segmentation_loss(
                model(item.image[None]),
                item.target[None],
                item.valid[None],
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


def bn_batches(
    caches: Mapping[str, Cache], spec: ModelSpec, patches: int, patch_size: int, seed: int = 0
) -> list[torch.Tensor]:
    """A fixed list of training-patch batches (no augmentation) for recomputing BatchNorm."""
    sampler = PatchSampler(
        dict(caches), "train", patch_size, 0.5, "proportional", spec.lesion_classes, seed
    )
    dataset = PatchDataset(sampler, build_augmentation("none"), patches)
    return [batch["image"] for batch in DataLoader(dataset, batch_size=8, shuffle=False)]


def connectivity_curve(
    checkpoint_a: Path,
    checkpoint_b: Path,
    caches: Mapping[str, Cache],
    points: int = 11,
    bn_policy: ConnectivityPolicy = "average",
    bn_patches: int = 32,
    patch_size: int = 256,
    split: str = "valid",
    bins: int = 1000,
) -> pd.DataFrame:
    """Score and loss along the path from ``checkpoint_a`` (lam 0) to ``checkpoint_b`` (lam 1)."""
    if bn_policy not in ("average", "recompute"):
        raise ValueError(f"bn_policy must be 'average' or 'recompute', not {bn_policy!r}")
    check_compatible([Path(checkpoint_a), Path(checkpoint_b)])
    state_a, metadata = load_checkpoint(checkpoint_a)
    state_b, _ = load_checkpoint(checkpoint_b)
    spec = ModelSpec.from_dict(metadata["architecture"])
    model = build_model(spec)
    images = [ValidationImages(cache, split, spec.lesion_classes) for cache in caches.values()]
    batches = (
        bn_batches(caches, spec, bn_patches, min(patch_size, *(c.size for c in caches.values())))
        if bn_policy == "recompute"
        else []
    )
    rows = []
    for lam in lambdas(points):
        model.load_state_dict(interpolate(state_a, state_b, float(lam)))
        if batches:
            recompute_bn(model, batches)
        score = validate(model, images, spec, bins)["score"]
        rows.append((float(lam), score, validation_loss(model, images, spec)))
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def barrier(curve: pd.DataFrame, column: str = "score", higher_is_better: bool = True) -> float:
    """How far ``column`` gets worse than the straight line between the endpoints (0: never).

    For a score that is the largest drop below the chord, for a loss the largest rise above it.
    """
    lam, values = curve["lam"].to_numpy(), curve[column].to_numpy()
    chord = values[0] + (values[-1] - values[0]) * lam
    worse = chord - values if higher_is_better else values - chord
    return float(max(0.0, np.max(worse)))
