"""U-Net construction from a serialisable model spec.

The spec travels in every checkpoint's metadata, so any checkpoint can be
rebuilt, merged or evaluated without the config that trained it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from lesionsoup.core import pretrained
from lesionsoup.core.pretrained import EncoderWeightsUnavailable
from lesionsoup.core.specs import ModelSpec


def build_model(spec: ModelSpec, pretrained_cache: Path | None = None) -> torch.nn.Module:
    """A segmentation_models_pytorch U-Net for ``spec`` (raw logits out).

    Pretrained encoder weights (``spec.encoder_weights``) are read from ``pretrained_cache``
    (``lesionsoup fetch-weights``'s folder) without any network, or without it from the
    default Hugging Face cache, downloaded once when missing (``lesionsoup.core.pretrained``);
    ``EncoderWeightsUnavailable`` says how to have them where they cannot be.
    """
    weights = None
    if spec.encoder_weights is not None:
        source = pretrained.source_of(spec.encoder, spec.encoder_weights)
        weights = pretrained.weights_file(source, pretrained_cache)
    try:
        if weights is not None and pretrained.timm_name(spec.encoder) is not None:
            # timm reads the file as it would its download: the same checks and adaptation
            overlay = {"file": str(weights), "source": None}
            model = _unet(spec, encoder_weights=True, pretrained_cfg_overlay=overlay)
        else:
            model = _unet(spec, encoder_weights=None)
            if weights is not None:  # what segmentation_models_pytorch does with its download
                model.encoder.load_state_dict(load_file(weights, device="cpu"))
    except (OSError, RuntimeError, SafetensorError) as error:
        if weights is None:
            raise
        raise EncoderWeightsUnavailable(
            f"{weights}: encoder weights {spec.encoder_weights!r} for {spec.encoder!r} could "
            f"not be loaded ({type(error).__name__}: {error}); fetch them again "
            f"(lesionsoup fetch-weights)"
        ) from error
    _drop_unused_encoder_stages(model.encoder)
    return model


def _unet(spec: ModelSpec, **encoder: Any) -> torch.nn.Module:
    import segmentation_models_pytorch as smp

    return smp.Unet(
        encoder_name=spec.encoder,
        encoder_depth=spec.encoder_depth,
        decoder_channels=spec.decoder_channels,
        classes=spec.out_channels,
        activation=None,
        **encoder,
    )


def _unused_encoder_stages(encoder: torch.nn.Module) -> list[str]:
    """The encoder's children with parameters that a forward pass never runs."""
    used: set[str] = set()
    hooks = [
        child.register_forward_hook(lambda *_, name=name: used.add(name))
        for name, child in encoder.named_children()
    ]
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        encoder(torch.zeros(1, 3, 64, 64))
    encoder.train(was_training)
    for hook in hooks:
        hook.remove()
    return [
        name
        for name, child in encoder.named_children()
        if name not in used and any(True for _ in child.parameters())
    ]


def _drop_unused_encoder_stages(encoder: torch.nn.Module) -> None:
    """Remove encoder stages a shallow ``encoder_depth`` never runs.

    segmentation_models_pytorch keeps them (e.g. ResNet's layer4 at depth 3);
    they would only inflate checkpoints, soups and optimiser state.
    """
    for name in _unused_encoder_stages(encoder):
        delattr(encoder, name)


def smp_unet(spec: ModelSpec, state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """segmentation_models_pytorch's own U-Net of ``spec`` holding ``state``, a lesionsoup
    model's weights, so that it loads strictly into ``smp.Unet`` as ``smp`` builds it.

    The encoder stages lesionsoup drops (``_drop_unused_encoder_stages``) are filled with
    zeros: they never run, so the outputs are those of the lesionsoup model. Any other
    missing or unexpected tensor is refused.
    """
    model = _unet(spec, encoder_weights=None)
    unused = tuple(f"encoder.{name}." for name in _unused_encoder_stages(model.encoder))
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.zero_()
    result = model.load_state_dict(dict(state), strict=False)
    missing = [key for key in result.missing_keys if not key.startswith(unused)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"weights do not fit the {spec.encoder} U-Net: missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return model


def load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load ``state`` into a ``build_model`` model strictly, but for the tensors of encoder
    stages the model dropped, which a full segmentation_models_pytorch state (``smp_unet``)
    holds; a mismatch raises ``RuntimeError``."""
    present = {name for name, _ in model.encoder.named_children()}
    model.load_state_dict(
        {
            key: value
            for key, value in state.items()
            if not (key.startswith("encoder.") and key.split(".")[1] not in present)
        }
    )


def probabilities(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Per-lesion probabilities (B, L, H, W) from the model's logits."""
    if head == "softmax":
        return torch.softmax(logits.float(), dim=1)[:, 1:]
    return torch.sigmoid(logits.float())


def predicted_classes(probs: torch.Tensor | np.ndarray) -> np.ndarray:
    """The argmax (H, W) uint8 over the background, 1 - the sum of the lesion probabilities
    (L, H, W), and the lesions: 0 background, ``k + 1`` lesion ``k``; ties go to the lower
    index. A tensor is reduced on its device; only the class map reaches the host."""
    if isinstance(probs, torch.Tensor):
        probs = probs.float()
        full = torch.cat([1 - probs.sum(0, keepdim=True), probs])
        return full.argmax(0).to(torch.uint8).cpu().numpy()
    probs = probs.astype(np.float32, copy=False)
    return np.concatenate([1 - probs.sum(0, keepdims=True), probs]).argmax(0).astype(np.uint8)
