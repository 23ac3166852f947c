"""The canonical lesion classes and the bit layout of the cached label plane.

Every dataset adapter maps its native mask names onto these classes, the
cache stores one uint8 label plane per image with one bit per class, and the
models predict one channel per trained lesion in ``TRAINED`` order.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np


class Lesion(StrEnum):
    """Lesion classes; the value is the short name used in files and tables."""

    EX = "EX"  # hard exudates
    HE = "HE"  # haemorrhages
    MA = "MA"  # microaneurysms
    CWS = "CWS"  # cotton-wool spots (soft exudates, "SE")
    IRMA = "IRMA"  # intraretinal microvascular abnormalities (extra)
    NV = "NV"  # neovascularisation (extra)

    @property
    def bit(self) -> int:
        return LESION_BITS[self]


#: The four lesions every dataset annotates and that models are trained on.
TRAINED: tuple[Lesion, ...] = (Lesion.EX, Lesion.HE, Lesion.MA, Lesion.CWS)
#: Classes some datasets carry (FGADR, RETLES); kept in manifests and caches only.
EXTRA: tuple[Lesion, ...] = (Lesion.IRMA, Lesion.NV)
ALL: tuple[Lesion, ...] = TRAINED + EXTRA

LESION_BITS: dict[Lesion, int] = {lesion: 1 << i for i, lesion in enumerate(ALL)}
#: Set inside the field of view (the circular fundus disc).
FOV_BIT = 1 << 6
#: Set where the annotation must not count, for the loss and for every metric
#: (e.g. RETLES value 127). One bit for all classes.
IGNORE_BIT = 1 << 7

#: The paper authors' priority when lesions overlap in a softmax model: the
#: first listed wins the pixel (their label map writes CWS, EX, HE, then MA on top).
#: The one statement of that order, for the softmax loss and ``priority_plane``.
SOFTMAX_PRIORITY: tuple[Lesion, ...] = (Lesion.MA, Lesion.HE, Lesion.EX, Lesion.CWS)


def parse_lesions(names: list[str] | tuple[str, ...]) -> tuple[Lesion, ...]:
    """Lesions from their short names, with ``SE`` accepted for ``CWS``."""
    aliases = {"SE": "CWS"}
    try:
        return tuple(Lesion(aliases.get(n.upper(), n.upper())) for n in names)
    except ValueError as error:
        raise ValueError(
            f"unknown lesion in {list(names)}; known: {[x.value for x in ALL]}"
        ) from error


def unpack(labels: np.ndarray, lesions: tuple[Lesion, ...] = TRAINED) -> np.ndarray:
    """Binary masks (C, H, W) as uint8 from a label plane (H, W), one per lesion."""
    bits = np.array([lesion.bit for lesion in lesions], dtype=np.uint8)
    return ((labels[None, ...] & bits[:, None, None]) > 0).astype(np.uint8)


def priority_plane(labels: np.ndarray, lesions: tuple[Lesion, ...] = TRAINED) -> np.ndarray:
    """The label plane with each pixel's lesion bits of ``lesions`` cut to the one that wins
    under ``SOFTMAX_PRIORITY`` (the softmax head's training labels); other bits are kept."""
    labels = np.asarray(labels)
    ranked = [x for x in SOFTMAX_PRIORITY if x in lesions]
    bits = np.uint8(sum(lesion.bit for lesion in ranked))
    winner = np.zeros(labels.shape, np.uint8)
    for lesion in reversed(ranked):
        winner[(labels & lesion.bit) != 0] = lesion.bit
    return (labels & ~bits) | winner


def pack(
    masks: dict[Lesion, np.ndarray], fov: np.ndarray, ignore: np.ndarray | None = None
) -> np.ndarray:
    """The label plane (H, W) uint8 from boolean masks of equal shape."""
    labels = np.asarray(fov, bool).view(np.uint8) * np.uint8(FOV_BIT)
    planes = [*((mask, lesion.bit) for lesion, mask in masks.items()), (ignore, IGNORE_BIT)]
    for mask, bit in planes:
        if mask is None:
            continue
        if np.shape(mask) != labels.shape:  # whole-plane arithmetic would broadcast it
            raise ValueError(f"a mask of shape {np.shape(mask)} on labels {labels.shape}")
        labels |= np.asarray(mask, bool).view(np.uint8) * np.uint8(bit)
    return labels
