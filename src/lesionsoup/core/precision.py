"""Numeric precision: the one place that decides how a model computes on a device.

``auto`` picks bf16 autocast on a GPU that runs bf16 natively (compute
capability 8.0 and up: A100, H100, RTX 30xx and later), fp16 autocast with a
gradient scaler on older GPUs (V100, T4: their bf16 is emulated or missing),
and plain fp32 on the CPU. ``bf16``, ``fp16`` and ``fp32`` ask for one
explicitly, and ``tf32`` is fp32 whose matrix products run in TensorFloat-32 on
GPUs that have it (``torch.set_float32_matmul_precision("high")``: the paper
authors' fp32 training); on the CPU it is fp32. bf16 on a GPU without native
support is refused rather than emulated slowly. fp16 gradients underflow
without loss scaling, so fp16 training always gets a ``torch.amp.GradScaler``;
bf16 has fp32's exponent range and needs none.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

#: The names a configuration may give, ``auto`` first (the default).
PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp16", "fp32", "tf32")
#: The compute capability from which NVIDIA GPUs compute bf16 natively (Ampere).
NATIVE_BF16_CAPABILITY = (8, 0)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """A resolved precision on one device type: what autocast runs and whether to scale."""

    name: str  # bf16, fp16, fp32 or tf32 (never auto; tf32 only on a GPU)
    device_type: str  # cuda or cpu

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype; None for fp32 (no autocast)."""
        return _DTYPES.get(self.name)

    @property
    def scaled(self) -> bool:
        """Whether training needs a gradient scaler (fp16 only)."""
        return self.name == "fp16"

    @property
    def matmul_precision(self) -> str:
        """``torch.set_float32_matmul_precision``'s setting for this precision's fp32 products."""
        return "high" if self.name == "tf32" else "highest"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of the forward pass (nothing for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only when ``scaled`` (a disabled one passes through)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scaled)


def native_bf16(device: torch.device) -> bool:
    """Whether a CUDA device computes bf16 natively (compute capability >= 8.0).

    Read from the device's own capability, as
    ``torch.cuda.is_bf16_supported(including_emulation=False)`` does for the
    current device only.
    """
    return torch.cuda.get_device_capability(device) >= NATIVE_BF16_CAPABILITY


def resolve(name: str, device: torch.device | str) -> Precision:
    """The precision ``name`` (one of ``PRECISIONS``) means on ``device``."""
    device = torch.device(device)
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; choose one of {list(PRECISIONS)}")
    if device.type != "cuda":
        return Precision("fp32" if name in ("auto", "tf32") else name, device.type)
    bf16 = native_bf16(device)
    if name == "auto":
        return Precision("bf16" if bf16 else "fp16", "cuda")
    if name == "bf16" and not bf16:
        capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
        raise ValueError(
            f"precision bf16: {torch.cuda.get_device_name(device)} (compute capability "
            f"{capability}) has no native bf16; use auto or fp16"
        )
    return Precision(name, "cuda")
