"""Training losses: Dice + BCE for the sigmoid head, Dice + CE for the softmax head.

Losses are computed in float32 whatever the autocast precision, and pixels
whose ``valid`` mask is 0 (the ignore bit) contribute nothing.

The soft Dice of a channel is ``(2 I + s) / (P + T + s)`` over the valid pixels of
the whole batch (``DiceOptions``: the smoothing ``s``, whether the softmax head's
background channel counts, and whether a channel without target pixels in the
batch counts). The whole batch is every device's (``BatchScope``); when a step
accumulates micro-batches, the Dice pools each one, while the cross-entropy
stays the whole batch's. The paper authors' loss is segmentation_models_pytorch's
``DiceLoss(mode="multiclass", smooth=0.4)`` as torchseg shipped it: background
kept, absent classes adding 0 to a mean that is still over every class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from lesionsoup.core.lesions import SOFTMAX_PRIORITY, Lesion


@dataclass(frozen=True)
class LossWeights:
    dice: float = 1.0
    bce: float = 1.0


Absent = Literal["keep", "skip"]


@dataclass(frozen=True)
class DiceOptions:
    """How the Dice term is computed (``TrainSettings.dice_*``; defaults: this project's loss).

    ``smooth`` is added to numerator and denominator; ``background`` counts the softmax
    head's background channel (the sigmoid head has none); ``absent``: a channel without
    valid target pixels in the batch is a channel like any other (``keep``) or adds 0 to
    the sum while the mean stays over every channel (``skip``).
    """

    smooth: float = 1.0
    background: bool = False
    absent: Absent = "keep"

    def __post_init__(self) -> None:
        if self.absent not in ("keep", "skip"):
            raise ValueError(f"dice_absent must be 'keep' or 'skip', not {self.absent!r}")
        if self.smooth < 0:
            raise ValueError(f"dice_smooth must not be negative, not {self.smooth}")


def _unchanged(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@dataclass(frozen=True)
class BatchScope:
    """Where the patches a loss sees sit in their step's batch.

    ``valid_pixels``: the valid pixels of the whole batch, every micro-batch and device
    (the cross-entropy's denominator; None: those of the patches seen); ``across_devices``:
    the sum over the devices of the loss's batch statistics (``Ranks.sum``), so that the
    Dice of N devices pools their N batches; ``share``: the patches' fraction of the batch,
    the weight of their Dice when a step accumulates micro-batches.
    """

    valid_pixels: torch.Tensor | None = None
    across_devices: Callable[[torch.Tensor], torch.Tensor] = _unchanged
    share: float = 1.0

    def pixels(self, valid: torch.Tensor) -> torch.Tensor:
        """The cross-entropy's denominator for the patches whose ``valid`` mask is given."""
        if self.valid_pixels is not None:
            return self.valid_pixels
        return self.across_devices(valid.sum().detach())

    def pooled(self, sums: list[torch.Tensor]) -> list[torch.Tensor]:
        """``sums`` over the patches seen, summed over the devices (one all-reduce)."""
        sizes = [tensor.numel() for tensor in sums]
        summed = self.across_devices(torch.cat([tensor.reshape(-1) for tensor in sums]))
        return [
            part.view_as(tensor) for part, tensor in zip(summed.split(sizes), sums, strict=True)
        ]


def dice_sums(probs: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> list[torch.Tensor]:
    """Per channel over the batch: intersection, target pixels, and the denominator P + T."""
    dims = (0, 2, 3)
    intersection = (probs * target * valid).sum(dims)
    present = (target * valid).sum(dims)
    return [intersection, present, (probs * valid).sum(dims) + present]


def soft_dice_loss(
    intersection: torch.Tensor,
    present: torch.Tensor,
    denominator: torch.Tensor,
    options: DiceOptions = DiceOptions(),  # noqa: B008 (frozen)
) -> torch.Tensor:
    """1 - soft Dice per channel from its batch sums (``dice_sums``), averaged over channels."""
    loss = 1 - (2 * intersection + options.smooth) / (denominator + options.smooth)
    if options.absent == "skip":
        loss = torch.where(present > 0, loss, torch.zeros_like(loss))
    return loss.mean()


def sigmoid_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    weights: LossWeights,
    dice_options: DiceOptions = DiceOptions(),  # noqa: B008 (frozen)
    scope: BatchScope = BatchScope(),  # noqa: B008 (frozen)
) -> torch.Tensor:
    """Dice + BCE on independent per-lesion channels (lesions may overlap)."""
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    sums = [(bce * valid).sum(), *dice_sums(torch.sigmoid(logits), target, valid)]
    bce_sum, *dice = scope.pooled(sums)
    bce_mean = bce_sum / (scope.pixels(valid) * logits.shape[1]).clamp_min(1)
    return weights.dice * scope.share * soft_dice_loss(*dice, dice_options) + weights.bce * bce_mean


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
    dice_options: DiceOptions = DiceOptions(),  # noqa: B008 (frozen)
    scope: BatchScope = BatchScope(),  # noqa: B008 (frozen)
) -> torch.Tensor:
    """Dice + cross-entropy over background and mutually exclusive lesions."""
    logits = logits.float()
    labels = priority_labels(target, lesions)
    ce = F.cross_entropy(logits, labels, reduction="none")
    one_hot = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).float()
    probs = torch.softmax(logits, dim=1)
    first = 0 if dice_options.background else 1
    sums = [(ce * valid[:, 0]).sum(), *dice_sums(probs[:, first:], one_hot[:, first:], valid)]
    ce_sum, *dice = scope.pooled(sums)
    ce_mean = ce_sum / scope.pixels(valid).clamp_min(1)
    return weights.dice * scope.share * soft_dice_loss(*dice, dice_options) + weights.bce * ce_mean


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    weights: LossWeights,
    head: str,
    lesions: tuple[Lesion, ...],
    dice_options: DiceOptions = DiceOptions(),  # noqa: B008 (frozen)
    scope: BatchScope = BatchScope(),  # noqa: B008 (frozen)
) -> torch.Tensor:
    """The loss of a head; ``target`` (B, L, H, W) in {0, 1}, ``valid`` (B, 1, H, W)."""
    if head == "softmax":
        return softmax_loss(logits, target, valid, weights, lesions, dice_options, scope)
    return sigmoid_loss(logits, target, valid, weights, dice_options, scope)
