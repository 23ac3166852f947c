"""U-Net construction from a serialisable model spec.

The spec travels in every checkpoint's metadata, so any checkpoint can be
rebuilt, merged or evaluated without the config that trained it.
"""

from __future__ import annotations

import numpy as np
import torch

from lesionsoup.core.specs import ModelSpec


class EncoderWeightsUnavailable(OSError):
    """Pretrained encoder weights were asked for and cannot be had on this machine."""


def build_model(spec: ModelSpec) -> torch.nn.Module:
    """A segmentation_models_pytorch U-Net for ``spec`` (raw logits out)."""
    import segmentation_models_pytorch as smp

    try:
        model = smp.Unet(
            encoder_name=spec.encoder,
            encoder_weights=spec.encoder_weights,
            encoder_depth=spec.encoder_depth,
            decoder_channels=spec.decoder_channels,
            classes=spec.out_channels,
            activation=None,
        )
    except (OSError, RuntimeError, ConnectionError) as error:
        if spec.encoder_weights is None:
            raise
        raise EncoderWeightsUnavailable(
            f"encoder weights {spec.encoder_weights!r} for {spec.encoder!r} could not be loaded "
            f"({type(error).__name__}: {error}). To use them on a machine without network, run "
            f"once where the network is reachable:\n"
            f'  python -c "import segmentation_models_pytorch as smp; '
            f"smp.Unet('{spec.encoder}', encoder_weights='{spec.encoder_weights}')\"\n"
            f"then copy the Hugging Face cache (~/.cache/huggingface, or $HF_HOME) to this "
            f"machine and set HF_HOME to it and HF_HUB_OFFLINE=1. Or set "
            f"model.encoder_weights: null in the config to start from random weights."
        ) from error
    _drop_unused_encoder_stages(model.encoder)
    return model


def _drop_unused_encoder_stages(encoder: torch.nn.Module) -> None:
    """Remove encoder stages a shallow ``encoder_depth`` never runs.

    segmentation_models_pytorch keeps them (e.g. ResNet's layer4 at depth 3);
    they would only inflate checkpoints, soups and optimiser state.
    """
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
    for name, child in list(encoder.named_children()):
        if name not in used and any(True for _ in child.parameters()):
            delattr(encoder, name)


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
