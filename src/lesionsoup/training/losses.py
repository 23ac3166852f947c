"""Training losses: Dice + BCE for the sigmoid head, Dice + CE for the softmax head.

Losses are computed in float32 whatever the autocast precision, and pixels
whose ``valid`` mask is 0 (the ignore bit) contribute nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lesionsoup.core.lesions import SOFTMAX_PRIORITY, Lesion


@dataclass(frozen=True)
class LossWeights:
    dice: float = 1.0
    bce: float = 1.0


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per channel, pooled over the batch, averaged over channels."""
    dims = (0, 2, 3)
    intersection = (probs * target * valid).sum(dims)
    denominator = (probs * valid).sum(dims) + (target * valid).sum(dims)
    return (1 - (2 * intersection + 1) / (denominator + 1)).mean()


def sigmoid_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, weights: LossWeights
) -> torch.Tensor:
    """Dice + BCE on independent per-lesion channels (lesions may overlap)."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (bce * valid).sum() / (valid.sum() * logits.shape[1]).clamp_min(1)
    dice = soft_dice_loss(torch.sigmoid(logits), target, valid)
    return weights.dice * dice + weights.bce * bce


def priority_labels(target: torch.Tensor, lesions: tuple[Lesion, ...]) -> torch.Tensor:
    """Class index per pixel (0 = background) where overlaps go to the highest priority.

    Priority is the paper authors' MA > HE > EX > CWS; the index of a lesion is
    its position in ``lesions`` plus one.
    """
    labels = torch.zeros(target.shape[0], *target.shape[2:], dtype=torch.long, device=target.device)
    for lesion in reversed([x for x in SOFTMAX_PRIORITY if x in lesions]):
        channel = lesions.index(lesion)
        labels[target[:, channel] > 0] = channel + 1
    return labels


def softmax_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    weights: LossWeights,
    lesions: tuple[Lesion, ...],
) -> torch.Tensor:
    """Dice + cross-entropy over background and mutually exclusive lesions."""
    logits = logits.float()
    labels = priority_labels(target, lesions)
    ce = F.cross_entropy(logits, labels, reduction="none")
    ce = (ce * valid[:, 0]).sum() / valid.sum().clamp_min(1)
    one_hot = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).float()
    probs = torch.softmax(logits, dim=1)
    dice = soft_dice_loss(probs[:, 1:], one_hot[:, 1:], valid)
    return weights.dice * dice + weights.bce * ce


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    weights: LossWeights,
    head: str,
    lesions: tuple[Lesion, ...],
) -> torch.Tensor:
    """The loss of a head; ``target`` (B, L, H, W) in {0, 1}, ``valid`` (B, 1, H, W)."""
    if head == "softmax":
        return softmax_loss(logits, target, valid, weights, lesions)
    return sigmoid_loss(logits, target, valid, weights)
