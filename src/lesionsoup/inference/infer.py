"""Inference: per-lesion probability maps for whole images.

Images are (B, 3, H, W) tensors normalised as in training
(``lesionsoup.training.sampling.to_tensors``); the result is (B, L, H, W) float32
probabilities, one channel per lesion of the model, on the model's device.

``infer`` composes three independent steps around a *forward*, any callable
that maps a normalised batch whose sides are multiples of ``SIDE_MULTIPLE`` to
probabilities (one model: ``model_forward``; an ensemble: ``lesionsoup.inference.predictor``):

* flip test-time augmentation: the probabilities of each flipped view are
  flipped back and averaged with those of the unflipped image;
* whole image, or a sliding window: tiles placed evenly with at least the
  requested overlap, each tile's probabilities weighted by a Gaussian centred
  on the tile (sigma = tile / 8, as nnU-Net), the weighted sum divided by the
  summed weights, so that tile borders, where the network sees least context,
  count least;
* padding of sides that are not multiples of ``SIDE_MULTIPLE`` (reflected, or
  zeros in the normalised input, i.e. the ImageNet mean colour), cropped back.

Pixels outside the field of view, when its mask is given, get probability 0.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from lesionsoup.core.lesions import FOV_BIT
from lesionsoup.core.model import probabilities
from lesionsoup.core.precision import PRECISIONS, resolve

#: U-Net encoders downsample up to 5 times: inputs must have sides divisible by 2**5.
SIDE_MULTIPLE = 32
#: Flip names and the tensor dimensions of a (B, C, H, W) batch they reverse.
FLIPS: dict[str, tuple[int, ...]] = {"horizontal": (3,), "vertical": (2,), "both": (2, 3)}

Forward = Callable[[torch.Tensor], torch.Tensor]


def autocast_for(
    device: torch.device, precision: str = "auto"
) -> contextlib.AbstractContextManager:
    """The autocast of ``precision`` on ``device`` (see ``lesionsoup.core.precision``)."""
    return resolve(precision, device).autocast()


@torch.inference_mode()
def predict_whole(
    model: torch.nn.Module, images: torch.Tensor, head: str, precision: str = "auto"
) -> torch.Tensor:
    """Probabilities of whole images at their own resolution (sides divisible by 32)."""
    device = next(model.parameters()).device
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast_for(device, precision):
        logits = model(images)
    return probabilities(logits, head)


def model_forward(model: torch.nn.Module, head: str, precision: str = "auto") -> Forward:
    """The forward of one model for ``infer``; puts the model in evaluation mode."""
    model.eval()
    return lambda images: predict_whole(model, images, head, precision)


@dataclass(frozen=True)
class InferenceSettings:
    """How images are run through a model; JSON-able through ``as_dict``/``from_dict``.

    ``tile`` and ``overlap`` (the fraction of a tile shared with its
    neighbour, at least) apply to the sliding window only; ``tta`` lists the
    flipped views averaged with the unflipped image (names of ``FLIPS``);
    ``batch_size`` counts images in whole mode and tiles in sliding mode;
    ``precision`` is one of ``lesionsoup.core.precision.PRECISIONS``.
    """

    mode: Literal["whole", "sliding"] = "whole"
    tile: int = 512
    overlap: float = 0.5
    tta: tuple[str, ...] = ()
    batch_size: int = 4
    padding: Literal["reflect", "zero"] = "reflect"
    precision: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tta", tuple(self.tta))
        if self.mode not in ("whole", "sliding"):
            raise ValueError(f"inference mode must be 'whole' or 'sliding', not {self.mode!r}")
        if self.tile < 1:
            raise ValueError(f"tile must be a positive number of pixels, not {self.tile}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"overlap must be a fraction in [0, 1), not {self.overlap}")
        unknown = [flip for flip in self.tta if flip not in FLIPS]
        if unknown or len(set(self.tta)) != len(self.tta):
            raise ValueError(f"tta must list distinct flips among {list(FLIPS)}, not {self.tta}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.padding not in ("reflect", "zero"):
            raise ValueError(f"padding must be 'reflect' or 'zero', not {self.padding!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, not {self.precision!r}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tta": list(self.tta)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InferenceSettings:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown inference settings {sorted(unknown)}")
        return cls(**data)


DEFAULT_SETTINGS = InferenceSettings()


def fov_from_labels(labels: np.ndarray) -> np.ndarray:
    """The field-of-view mask (boolean, same shape) of a label plane or a stack of them."""
    return (np.asarray(labels) & FOV_BIT) != 0


def gaussian_importance(tile_h: int, tile_w: int, sigma_scale: float = 1 / 8) -> torch.Tensor:
    """Tile weights (tile_h, tile_w): a Gaussian centred on the tile, peak 1, all positive.

    The standard deviation along each side is ``sigma_scale`` times its length.
    """
    axes = []
    for length in (tile_h, tile_w):
        offsets = torch.arange(length, dtype=torch.float64) - (length - 1) / 2
        axes.append(torch.exp(-0.5 * (offsets / (sigma_scale * length)) ** 2))
    weights = torch.outer(*axes)
    weights /= weights.max()
    # corners of large tiles underflow float32; keep every pixel covered with a positive weight
    return weights.float().clamp_min(float(torch.finfo(torch.float32).tiny))


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles covering ``length`` pixels, evenly spread, overlapping >= overlap.

    A tile at least as long as ``length`` gives the single start 0.
    """
    if tile >= length:
        return [0]
    max_step = max(1, math.floor(tile * (1 - overlap)))
    count = math.ceil((length - tile) / max_step) + 1
    step = (length - tile) / (count - 1)
    return [round(index * step) for index in range(count)]


def _pad_to_multiple(images: torch.Tensor, padding: str) -> torch.Tensor:
    """Pad bottom and right so that both sides are multiples of ``SIDE_MULTIPLE``."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % SIDE_MULTIPLE, -width % SIDE_MULTIPLE
    if not pad_h and not pad_w:
        return images
    if padding == "reflect":
        if pad_h >= height or pad_w >= width:
            raise ValueError(
                f"a {height}x{width} input is too small to reflect-pad to multiples of "
                f"{SIDE_MULTIPLE}; use padding='zero'"
            )
        return F.pad(images, (0, pad_w, 0, pad_h), mode="reflect")
    return F.pad(images, (0, pad_w, 0, pad_h), mode="constant", value=0.0)


def _padded_forward(forward: Forward, images: torch.Tensor, padding: str) -> torch.Tensor:
    height, width = images.shape[-2:]
    return forward(_pad_to_multiple(images, padding))[..., :height, :width].float()


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _whole(forward: Forward, images: torch.Tensor, settings: InferenceSettings) -> torch.Tensor:
    parts = [
        _padded_forward(forward, images[start : start + settings.batch_size], settings.padding)
        for start in range(0, images.shape[0], settings.batch_size)
    ]
    return torch.cat(parts)


def _sliding(forward: Forward, images: torch.Tensor, settings: InferenceSettings) -> torch.Tensor:
    count, _, height, width = images.shape
    tile_h, tile_w = min(settings.tile, height), min(settings.tile, width)
    corners = [
        (top, left)
        for top in tile_starts(height, tile_h, settings.overlap)
        for left in tile_starts(width, tile_w, settings.overlap)
    ]
    windows = [(index, top, left) for index in range(count) for top, left in corners]
    weights = gaussian_importance(tile_h, tile_w)
    summed: torch.Tensor | None = None
    for batch in _chunks(windows, settings.batch_size):
        tiles = torch.stack(
            [images[i, :, top : top + tile_h, left : left + tile_w] for i, top, left in batch]
        )
        probs = _padded_forward(forward, tiles, settings.padding)
        if summed is None:
            weights = weights.to(probs.device)
            summed = probs.new_zeros((count, probs.shape[1], height, width))
        for (i, top, left), tile_probs in zip(batch, probs * weights, strict=True):
            summed[i, :, top : top + tile_h, left : left + tile_w] += tile_probs
    covered = torch.zeros((height, width), device=weights.device)
    for top, left in corners:
        covered[top : top + tile_h, left : left + tile_w] += weights
    return summed / covered


@torch.inference_mode()
def infer(
    forward: Forward,
    images: torch.Tensor,
    settings: InferenceSettings = DEFAULT_SETTINGS,
    fov: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Probabilities (B, L, H, W) of normalised images (B, 3, H, W) of any size.

    ``fov`` (B, H, W), boolean, sets the probabilities outside it to 0.
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise ValueError(f"expected a (B, 3, H, W) batch of images, got {tuple(images.shape)}")
    run = _whole if settings.mode == "whole" else _sliding
    probs = run(forward, images, settings)
    for flip in settings.tta:
        dims = FLIPS[flip]
        probs += run(forward, images.flip(dims), settings).flip(dims)
    if settings.tta:
        probs /= 1 + len(settings.tta)
    if fov is not None:
        fov = torch.as_tensor(fov)
        if fov.shape != (images.shape[0], *images.shape[2:]):
            raise ValueError(f"fov mask {tuple(fov.shape)} does not match images {images.shape}")
        probs *= fov.to(probs.device, torch.bool)[:, None]
    return probs


def predict(
    model: torch.nn.Module,
    images: torch.Tensor,
    head: str,
    settings: InferenceSettings = DEFAULT_SETTINGS,
    fov: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """``infer`` with one model whose logits ``head`` turns into probabilities."""
    return infer(model_forward(model, head, settings.precision), images, settings, fov)
