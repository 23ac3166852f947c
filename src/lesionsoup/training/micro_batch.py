"""A batch that fits: micro-batches accumulated to the configured batch, sized by a probe.

``micro_batch: auto`` tries a forward and backward pass of the whole per-device
batch on the device and halves it on an out-of-memory error until one fits;
a number gives the micro-batch outright. A step then runs the batch as
micro-batches and adds their gradients before the update: the cross-entropy
is exactly the whole batch's (each micro-batch's sum over the batch's valid
pixels), while BatchNorm and the batch-pooled Dice see each micro-batch
(synchronised BatchNorm over several devices or GroupNorm are the remedies
for the first). An out-of-memory error later in the run halves the
micro-batch and resumes from the last saved state (``lesionsoup.training.run``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping

import torch

from lesionsoup.core.model import build_model
from lesionsoup.core.precision import Precision
from lesionsoup.core.specs import ModelSpec, TrainSettings

log = logging.getLogger(__name__)

AUTO = "auto"


class MicroBatchTooLarge(RuntimeError):
    """A micro-batch ran out of device memory; the run resumes with half of it."""

    def __init__(self, micro_batch: int, rank: int = 0) -> None:
        super().__init__(f"rank {rank}: out of device memory at micro-batch {micro_batch}")
        self.micro_batch = micro_batch


def halved(micro_batch: int) -> int:
    """The next micro-batch to try after ``micro_batch`` ran out of memory."""
    if micro_batch <= 1:
        raise MemoryError("a micro-batch of one patch does not fit the device")
    return micro_batch // 2


def largest_fitting(batch_size: int, fits: Callable[[int], None]) -> int:
    """The largest of ``batch_size``, its half, its quarter, ... for which ``fits`` (a trial
    forward and backward pass) raises no ``torch.OutOfMemoryError``."""
    micro_batch = batch_size
    while True:
        try:
            fits(micro_batch)
            return micro_batch
        except torch.OutOfMemoryError:
            log.info("micro-batch %d does not fit the device", micro_batch)
        micro_batch = halved(micro_batch)  # after the except block: the failed try is freed
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def probe(
    spec: ModelSpec, settings: TrainSettings, target: torch.device, precision: Precision
) -> int:
    """The largest micro-batch (the batch, halved) whose training step fits ``target``:
    tried on a throwaway model of the run's architecture, with its AdamW moments."""
    model = build_model(dataclasses.replace(spec, encoder_weights=None)).to(target)
    optimizer = torch.optim.AdamW(model.parameters())

    def fits(micro_batch: int) -> None:
        trial_step(model, optimizer, micro_batch, settings.patch_size, precision)

    fitting = largest_fitting(settings.batch_size, fits)
    if target.type == "cuda":
        peak = torch.cuda.max_memory_allocated(target) / 2**30
        log.info(
            "micro-batch %d of %d fits %s: peak %.2f GiB, %.3f GiB a patch",
            fitting, settings.batch_size, target, peak, peak / fitting,
        )  # fmt: skip
    return fitting


def trial_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batch: int,
    patch_size: int,
    precision: Precision,
) -> None:
    """One training step of ``model`` on ``micro_batch`` blank patches (its memory, not its
    result, matters); raises ``torch.OutOfMemoryError`` when it does not fit."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    images = torch.zeros(micro_batch, 3, patch_size, patch_size, device=device)
    with precision.autocast():
        logits = model(images)
    logits.float().square().mean().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def chunks(
    batch: Mapping[str, torch.Tensor], micro_batch: int
) -> Iterator[dict[str, torch.Tensor]]:
    """``batch`` as consecutive micro-batches of at most ``micro_batch`` patches."""
    size = len(next(iter(batch.values())))
    for start in range(0, size, micro_batch):
        yield {name: tensor[start : start + micro_batch] for name, tensor in batch.items()}
