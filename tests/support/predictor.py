"""A randomly initialised tiny U-Net checkpoint (tests/inference/test_predictor.py), shared with
the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import torch

from lesionsoup.core.checkpoint import save_checkpoint
from lesionsoup.core.model import ModelSpec, build_model


def tiny_spec(**changes) -> ModelSpec:
    values = {
        "encoder": "resnet18",
        "encoder_weights": None,
        "encoder_depth": 3,
        "decoder_channels": (32, 16, 8),
    }
    return ModelSpec(**{**values, **changes})


def save_tiny(path: Path, seed: int, **changes) -> torch.nn.Module:
    """A randomly initialised tiny U-Net saved as a checkpoint; returns the model (eval mode)."""
    torch.manual_seed(seed)
    spec = tiny_spec(**changes)
    model = build_model(spec).eval()
    save_checkpoint(path, model.state_dict(), {"architecture": spec.as_dict()})
    return model
