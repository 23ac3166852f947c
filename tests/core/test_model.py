import os
import subprocess
import sys

import pytest
import torch

from lesionsoup.core.model import build_model, probabilities
from lesionsoup.core.specs import ModelSpec

TINY = ModelSpec(
    encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(16, 8, 4)
)


def test_output_channels_per_head():
    image = torch.zeros(1, 3, 64, 64)
    assert build_model(TINY)(image).shape == (1, 4, 64, 64)
    softmax = ModelSpec(**{**TINY.__dict__, "head": "softmax"})
    logits = build_model(softmax)(image)
    assert logits.shape == (1, 5, 64, 64)
    probs = probabilities(logits, "softmax")
    assert probs.shape == (1, 4, 64, 64)
    assert torch.all(probs.sum(dim=1) <= 1 + 1e-6)


def test_unused_encoder_stages_are_dropped():
    names = {name for name, _ in build_model(TINY).encoder.named_children()}
    assert "layer3" not in names and "layer4" not in names and "layer2" in names


def test_spec_round_trips_through_json_dict():
    assert ModelSpec.from_dict(TINY.as_dict()) == TINY


def test_spec_validation():
    with pytest.raises(ValueError, match="decoder_channels"):
        ModelSpec(encoder_depth=3, decoder_channels=(8, 4))
    with pytest.raises(ValueError, match="lesion"):
        ModelSpec(lesions=("EX", "XX"))


def test_unavailable_imagenet_weights_give_the_offline_instructions(tmp_path):
    code = (
        "from lesionsoup.core.model import ModelSpec, build_model, EncoderWeightsUnavailable\n"
        "try:\n"
        "    build_model(ModelSpec(encoder='resnet18', encoder_weights='imagenet'))\n"
        "except EncoderWeightsUnavailable as error:\n"
        "    print(error)\n"
        "    raise SystemExit(3)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 3, result.stderr
    assert "resnet18" in result.stdout
    assert "HF_HOME" in result.stdout and "encoder_weights: null" in result.stdout
