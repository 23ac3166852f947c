"""Two toy checkpoints (tests/analysis/test_analysis_connectivity.py), shared with the figure
layout tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from conftest import TINY_SPEC

from lesionsoup.core.checkpoint import save_checkpoint
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import ModelSpec, TrainSettings

SPEC = TINY_SPEC


#: The training settings the checkpoints record: the recompute patches are drawn with them.
SETTINGS = TrainSettings(patch_size=32, augmentation="medium")


def checkpoint(path: Path, seed: int, spec: ModelSpec = SPEC) -> Path:
    """A checkpoint of ``spec`` (recorded as its architecture), drawn from ``seed``."""
    torch.manual_seed(seed)
    model = build_model(dataclasses.replace(spec, encoder_weights=None))
    with torch.no_grad():  # BatchNorm statistics that differ between the two models
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    metadata = {
        "architecture": spec.as_dict(),
        "init_id": "init-0",
        "wall_seconds": 1.0,
        "hyperparameters": SETTINGS.as_dict(),
    }
    save_checkpoint(path, model.state_dict(), metadata)
    return path
