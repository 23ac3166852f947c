"""Which tensors a part soup averages, and the anchor that supplies the rest.

A soup averages the ``full`` model, the ``encoder`` or the ``decoder``
(``lesionsoup.core.merge_rules.PARTS``). The two parts split the U-Net's state
dict in two: the encoder is every tensor under ``encoder.``; the decoder is
every other one, the decoder blocks and the segmentation head (the modules
the reference's ``initialize`` re-initialises together). The part not
averaged, BatchNorm statistics included, is the anchor's, bit for bit: the
ingredient with the best validation score as it is (``lesionsoup.merging.soups``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lesionsoup.core.checkpoint import StateDict, tensor_specs
from lesionsoup.core.merge_rules import DEFAULT_PART, Part
from lesionsoup.merging.averaging import read_tensors

#: The state-dict prefix of the U-Net's encoder (``segmentation_models_pytorch.Unet.encoder``).
ENCODER_PREFIX = "encoder."


def in_part(name: str, part: Part) -> bool:
    """Whether the tensor ``name`` belongs to ``part``."""
    if part == DEFAULT_PART:
        return True
    return name.startswith(ENCODER_PREFIX) == (part == "encoder")


def part_filter(part: Part) -> Callable[[str], bool]:
    """``in_part`` for one part: the tensors a soup of ``part`` averages."""
    return lambda name: in_part(name, part)


def anchor_rest(anchor: Path, part: Part) -> StateDict:
    """The anchor's tensors outside ``part`` (none for the full model); a model in which
    ``part`` or the rest would be empty is refused."""
    if part == DEFAULT_PART:
        return {}
    names = list(tensor_specs(anchor))
    averaged = sum(in_part(name, part) for name in names)
    if averaged in (0, len(names)):
        raise ValueError(
            f"{anchor}: {averaged} of its {len(names)} tensors are in the {part}; a {part} soup "
            f"needs a model with {ENCODER_PREFIX}* tensors and others"
        )
    return dict(read_tensors(anchor, lambda name: not in_part(name, part)))
