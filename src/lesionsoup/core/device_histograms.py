"""Histogram binning of one image on the device its probabilities are on.

The same binning as ``LesionHistogram.update`` (see ``lesionsoup.core.metrics``),
in torch: bin ``floor(p * bins)`` computed in float64 (exact for float32, bfloat16
and float16 probabilities), one extra bin for p == 1.0, and only the valid pixels
(field of view, no ignore bit) counted. Every lesion's counts and the number of
valid pixels outside [0, 1] are gathered into one small int64 tensor, which is
the only thing that crosses to the host: one transfer per image, whatever its size.

float64 is not available on Apple's MPS; probabilities there are binned on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lesionsoup.core.lesions import FOV_BIT, IGNORE_BIT, Lesion


def _as_labels(labels: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        labels = torch.tensor(np.asarray(labels))  # a copy: cache planes are read-only maps
    if labels.dtype != torch.uint8:
        raise ValueError(f"labels must be a uint8 label plane, got {labels.dtype}")
    return labels.to(device, non_blocking=True)


def _lesion_counts(
    probs: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, bins: int
) -> torch.Tensor:
    """Counts per slot ``2 * bin + target + 2`` (slots 0, 1: invalid pixels), plus bad pixels."""
    slots = 2 * (bins + 2)
    in_range = (probs >= 0) & (probs <= 1)  # False for NaN too
    counted = valid & in_range
    keys = (probs.to(torch.float64) * bins).to(torch.int64)
    keys = torch.where(counted, 2 * keys + target + 2, 0)
    bad = (valid & ~in_range).sum().reshape(1)
    return torch.cat([torch.bincount(keys.reshape(-1), minlength=slots), bad])


def _range_error(probs: torch.Tensor, valid: torch.Tensor) -> ValueError:
    values = probs[valid].double().cpu().numpy()
    low, high = np.nanmin(values, initial=0.0), np.nanmax(values, initial=1.0)
    return ValueError(f"probabilities of valid pixels must lie in [0, 1], not {low}..{high}")


@torch.inference_mode()
def bin_image(
    image_id: str,
    probs: torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    lesions: Sequence[Lesion],
    bins: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Negative and positive valid-pixel counts (L, bins + 1) of one image, as int64 arrays.

    ``probs`` is (L, H, W) in ``lesions`` order, floating point, on any device;
    ``labels`` the (H, W) uint8 label plane, moved to that device.
    """
    if not torch.is_floating_point(probs):
        raise ValueError(f"{image_id}: probabilities must be floating point, got {probs.dtype}")
    if probs.device.type == "mps":
        probs = probs.cpu()
    labels = _as_labels(labels, probs.device)
    valid = ((labels & FOV_BIT) != 0) & ((labels & IGNORE_BIT) == 0)
    counts = torch.stack(
        [
            _lesion_counts(channel, (labels & lesion.bit) != 0, valid, bins)
            for channel, lesion in zip(probs, lesions, strict=True)
        ]
    ).cpu()
    for channel, lesion, row in zip(probs, lesions, counts, strict=True):
        if row[-1] > 0:
            raise ValueError(f"{image_id} {lesion.value}: {_range_error(channel, valid)}")
    counts = counts[:, 2:-1].numpy()
    return counts[:, 0::2].copy(), counts[:, 1::2].copy()
