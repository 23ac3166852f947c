"""Untrained tiny checkpoints and rendered photographs (tests/deploy/test_predict.py), shared with
the export, evaluation and soup tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from lesionsoup.core.checkpoint import save_checkpoint
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import ModelSpec
from lesionsoup.data.synthetic.fundus import render_fundus

TINY = ModelSpec(
    encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4)
)


LESION_DENSITY = 3.0


def save_random_model(path: Path, seed: int = 0, **metadata: object) -> Path:
    """An untrained tiny U-Net saved as a checkpoint (fast tests of the plumbing)."""
    torch.manual_seed(seed)
    model = build_model(TINY)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model.state_dict(), {"architecture": TINY.as_dict(), **metadata})
    return path


def write_photograph(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def rendered(seed: int, height: int, width: int, density: float = LESION_DENSITY):
    return render_fundus(np.random.default_rng(seed), height, width, density, cws_probability=1)


def read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image
