"""The ranks of one run trained on several devices (distributed data parallel), seen from one.

A run with ``devices: N`` trains as N processes, one per device (NCCL between
GPUs, gloo between CPU processes), each with its own slice of every batch.
``Ranks`` is what a process knows of the others: its rank, how many there
are, and the few things they do together besides averaging gradients:

* ``any``/``share``/``barrier``: host-side agreement (whether to stop, rank
  0's validation result), on a gloo group so that it never waits on the
  GPU's queue;
* ``sum``: a differentiable sum over the ranks, by which the loss's batch
  statistics (Dice intersections, cross-entropy sums) cover the whole batch,
  so that N devices with batch b train as one device with batch N·b.

Rank 0 writes (state, checkpoints, logs, validation); the others only train.
One process alone is ``Ranks()``: every method is then a pass-through.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from lesionsoup.core.device import pick_device

T = TypeVar("T")

#: How long a rank waits for the others at a collective (rank 0 validating, saving).
COLLECTIVE_TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one run."""

    rank: int = 0
    world: int = 1
    control: Any = None  # the gloo group of host-side agreement (None: one process)

    @property
    def writes(self) -> bool:
        """Whether this rank writes the run's files (rank 0)."""
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank."""
        if self.world == 1:
            return flag
        value = torch.tensor([int(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.control)
        return bool(value.item())

    def minimum(self, value: int) -> int:
        """The smallest of every rank's ``value``."""
        if self.world == 1:
            return value
        tensor = torch.tensor([value])
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN, group=self.control)
        return int(tensor.item())

    def share(self, value: T) -> T:
        """Rank 0's ``value``, on every rank (a picklable object)."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier(group=self.control)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, differentiably: the gradient of a loss computed
        from the sum reaches every rank's own contribution."""
        if self.world == 1:
            return tensor
        return sum_over_ranks(tensor)

    def device(self, name: str) -> torch.device:
        """This rank's device: ``name`` as ``pick_device`` reads it, a GPU by rank."""
        target = pick_device(name)
        if target.type == "cuda" and self.world > 1:
            return torch.device("cuda", self.rank)
        return target

    def wrap(self, model: torch.nn.Module, target: torch.device) -> torch.nn.Module:
        """The module a step runs: ``model`` itself, or its distributed-data-parallel wrapper
        (gradients averaged over the ranks during the backward pass)."""
        if self.world == 1:
            return model
        device_ids = [target.index] if target.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


class _SumOverRanks(torch.autograd.Function):
    """An all-reduce (sum) whose gradient is the all-reduce of the gradients: a loss computed
    from the sum on every rank sends each rank the gradient of its own contribution (times the
    number of ranks, which the data-parallel average of the gradients divides away)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        summed = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(summed)
        return summed

    @staticmethod
    def backward(ctx: Any, gradient: torch.Tensor) -> torch.Tensor:
        summed = gradient.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(summed)
        return summed


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks of the default group, differentiably."""
    return _SumOverRanks.apply(tensor)


@contextmanager
def joined(rank: int, world: int, store_port: int, device: str) -> Iterator[Ranks]:
    """This process as rank ``rank`` of ``world``, meeting the others through the TCP store on
    ``store_port`` of this host (``lesionsoup.training.supervisor`` serves it); left at the end."""
    uses_gpu = pick_device(device).type == "cuda"
    if uses_gpu:
        torch.cuda.set_device(rank)
    store = dist.TCPStore("127.0.0.1", store_port, world, is_master=False)
    dist.init_process_group(
        "nccl" if uses_gpu else "gloo",
        store=store,
        rank=rank,
        world_size=world,
        timeout=COLLECTIVE_TIMEOUT,
    )
    try:
        control = dist.new_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT) if uses_gpu else None
        yield Ranks(rank, world, control)
    finally:
        dist.destroy_process_group()
