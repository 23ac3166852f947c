"""Sharpness of a minimum: how much the validation loss rises under random weight perturbations.

Following Li et al. 2018 ("Visualizing the Loss Landscape of Neural Nets"), a
direction is a Gaussian tensor per weight, rescaled filter by filter so that
each filter of the direction has the norm of the same filter of the weights
(a filter: one output channel of a convolution or one row of a linear layer).
Biases and BatchNorm parameters get no perturbation, as in that paper, and the
BatchNorm running statistics are kept. At radius ``r`` the model
``theta + r * d`` is scored; the sharpness at ``r`` is the loss increase over
the unperturbed model, averaged over the seeded directions. A flat minimum rises
little; comparing single models, soups and SWA models at the same radii shows
whether the minima of segmentation models are sharper where soups fail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from lesionsoup.analysis.connectivity import validation_loss
from lesionsoup.core.checkpoint import load_checkpoint
from lesionsoup.core.model import build_model
from lesionsoup.core.report_defaults import REPORT_DEFAULTS
from lesionsoup.data.cache import Cache
from lesionsoup.inference.predictor import spec_of
from lesionsoup.training.sampling import ValidationImages

SHARPNESS_COLUMNS = ("direction", "radius", "loss", "increase")
_DEFAULTS = REPORT_DEFAULTS["connectivity"]["sharpness"]

Loss = Callable[[torch.nn.Module], float]


@dataclass(frozen=True)
class SharpnessOptions:
    """The perturbations: filter-normalised ``radii``, ``directions`` per radius drawn from
    ``seed``."""

    radii: Sequence[float] = tuple(_DEFAULTS["radii"])
    directions: int = _DEFAULTS["directions"]
    seed: int = _DEFAULTS["seed"]


def filter_normalised_direction(
    model: torch.nn.Module, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """One random direction per parameter of ``model``, filter-normalised; zero for
    parameters with one dimension (biases, BatchNorm's weight and bias)."""
    direction = {}
    for name, weight in model.named_parameters():
        if weight.dim() <= 1:
            direction[name] = torch.zeros_like(weight)
            continue
        noise = torch.randn(weight.shape, generator=generator, dtype=torch.float32)
        noise = noise.to(weight.device, weight.dtype)
        dims = tuple(range(1, weight.dim()))
        norms = [torch.linalg.vector_norm(t, dim=dims, keepdim=True) for t in (weight, noise)]
        scale = norms[0].detach() / norms[1]
        direction[name] = noise * scale.nan_to_num(0.0)
    return direction


@torch.no_grad()
def perturbation_losses(
    model: torch.nn.Module,
    loss: Loss,
    radii: Sequence[float],
    directions: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """The loss at each radius along ``directions`` seeded random directions, and its
    increase over the unperturbed model; ``model`` is left as it came."""
    if directions < 1 or not radii or any(r <= 0 for r in radii):
        raise ValueError(f"need at least one direction and positive radii, not {radii}")
    original = {name: weight.detach().clone() for name, weight in model.named_parameters()}
    base = loss(model)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for index in range(directions):
        direction = filter_normalised_direction(model, generator)  # of the unperturbed weights
        try:
            for radius in radii:
                for name, weight in model.named_parameters():
                    weight.copy_(original[name] + radius * direction[name])
                value = loss(model)
                rows.append((index, float(radius), value, value - base))
        finally:
            for name, weight in model.named_parameters():
                weight.copy_(original[name])
    return pd.DataFrame(rows, columns=list(SHARPNESS_COLUMNS))


def sharpness(losses: pd.DataFrame) -> pd.Series:
    """Mean loss increase at each radius (the index), over the directions."""
    return losses.groupby("radius")["increase"].mean()


def checkpoint_sharpness(
    checkpoint: Path,
    caches: Mapping[str, Cache],
    radii: Sequence[float],
    directions: int = 3,
    seed: int = 0,
    split: str = "valid",
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """``perturbation_losses`` of a checkpoint's model on the validation images of
    ``caches`` (the connectivity curves' loss: whole images, unit weights); the model
    keeps its own BatchNorm statistics."""
    state, metadata = load_checkpoint(checkpoint)
    spec = spec_of(checkpoint, metadata)  # its weights replace any pretrained encoder's
    model = build_model(spec).to(device)
    model.load_state_dict(state)
    images = [ValidationImages(cache, split, spec.lesion_classes) for cache in caches.values()]
    return perturbation_losses(
        model, lambda module: validation_loss(module, images, spec), radii, directions, seed
    )


def checkpoints_sharpness(
    checkpoints: Mapping[str, Path],
    caches: Mapping[str, Cache],
    options: SharpnessOptions,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """The sharpness table of named checkpoints (``model`` column: their names), each one's
    ``checkpoint_sharpness``."""
    tables = {
        name: checkpoint_sharpness(
            path, caches, options.radii, options.directions, options.seed, device=device
        )
        for name, path in checkpoints.items()
    }
    return pd.concat(tables, names=["model"]).reset_index(level=0)
