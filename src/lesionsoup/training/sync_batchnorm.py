"""BatchNorm over every rank's patches (synchronised BatchNorm), on GPUs and on the CPU.

On GPUs this is torch's ``SyncBatchNorm`` (fused kernels, the paper authors'
setting through Lightning's ``sync_batchnorm``). torch's refuses CPU tensors,
so CPU processes under gloo (tests, CPU-only machines) use ``CpuSyncBatchNorm``:
the same statistics, the batch mean and the biased variance over every
rank's batch, summed across ranks by a differentiable all-reduce so that the
gradient is that of BatchNorm over the union batch. Both keep BatchNorm's
parameters and buffers under BatchNorm's names, so a checkpoint loads into a
plain U-Net.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from lesionsoup.training.distributed import sum_over_ranks


class CpuSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics cover the batches of every rank (any device)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not self.training:
            return F.batch_norm(
                input, self.running_mean, self.running_var, self.weight, self.bias,
                False, 0.0, self.eps,
            )  # fmt: skip
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        count = sum_over_ranks(input.new_tensor([input.numel() / input.shape[1]]))
        mean = sum_over_ranks(input.sum(dims)) / count
        centred = input - mean.view(shape)
        variance = sum_over_ranks((centred * centred).sum(dims)) / count
        self._track(mean.detach(), variance.detach(), count.detach())
        output = centred * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, variance: torch.Tensor, count: torch.Tensor) -> None:
        """Running statistics as BatchNorm keeps them (the unbiased variance)."""
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1 / self.num_batches_tracked
        unbiased = variance * count / (count - 1).clamp_min(1)
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(unbiased, momentum)


def synchronised(model: torch.nn.Module, device_type: str) -> torch.nn.Module:
    """``model`` with every BatchNorm synchronised across ranks (torch's on GPUs, else ours)."""
    if device_type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _converted(model)


def _converted(module: torch.nn.Module) -> torch.nn.Module:
    """``module``, its BatchNorm layers replaced by ``CpuSyncBatchNorm`` holding their state."""
    if isinstance(module, _BatchNorm) and not isinstance(module, CpuSyncBatchNorm):
        synced = CpuSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine,
            module.track_running_stats,
        )  # fmt: skip
        synced.load_state_dict(module.state_dict())
        synced.train(module.training)
        for parameter, original in zip(synced.parameters(), module.parameters(), strict=True):
            parameter.requires_grad_(original.requires_grad)
        return synced.to(next(module.buffers(), torch.empty(0)).device)
    for name, child in module.named_children():
        module.add_module(name, _converted(child))
    return module
