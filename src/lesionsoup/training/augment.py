"""Augmentation presets: albumentations pipelines applied to an image and its label plane.

A pipeline is a fixed sequence of named steps, geometric first, then colour.
Each step is one albumentations transform whose keyword arguments (its
probability ``p`` included) the preset gives and a configuration may
override::

    build_augmentation("medium")
    build_augmentation({"preset": "medium", "affine": {"p": 0.8, "rotate": [-30, 30]},
                        "noise": None})  # None drops a step; lists become tuples (YAML)

The label plane travels as albumentations' ``mask`` and is always resampled
with nearest neighbour, so that its bits are never mixed; pixels an affine
transform brings in from outside are 0 in the image and 0 in the label plane,
which clears their field-of-view bit as it should. Colour steps touch only the
image. Randomness comes from the seed given to ``augment`` for each sample, so
a sample is reproducible whatever process draws it.

Presets: the project's own ``none``, ``light``, ``medium``, ``heavy``, and the
reference codes' ``fundseg_*`` and ``fissionfusion_*``
(``reference_augmentations``, where their sources and deviations are listed).
Preset names are made of letters, digits and ``_`` so that they can name grid
recipes. ``randaugment`` mixes geometric and colour operations
(``paired_transforms.PairedRandAugment``) and comes last.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping
from typing import Any

import albumentations as A
import cv2
import numpy as np

from lesionsoup.training.paired_transforms import PairedRandAugment, PatchResizedCrop
from lesionsoup.training.reference_augmentations import REFERENCE_PRESETS

#: Arguments that keep labels exact and the border black; not configurable.
_FIXED_ARGUMENTS: dict[str, dict[str, Any]] = {
    "affine": {
        "interpolation": cv2.INTER_LINEAR,
        "mask_interpolation": cv2.INTER_NEAREST,
        "border_mode": cv2.BORDER_CONSTANT,
        "fill": 0,
        "fill_mask": 0,
    }
}


def one_flip(p: float = 0.5) -> A.OneOf:
    """A horizontal or a vertical flip (equally likely) with probability ``p``."""
    return A.OneOf([A.HorizontalFlip(p=1.0), A.VerticalFlip(p=1.0)], p=p)


#: A step builds one transform (or composition) from its keyword arguments.
Step = Callable[..., A.BasicTransform | A.BaseCompose]

GEOMETRIC_STEPS: dict[str, Step] = {
    "resized_crop": PatchResizedCrop,
    "flip": one_flip,
    "hflip": A.HorizontalFlip,
    "vflip": A.VerticalFlip,
    "rotate90": A.RandomRotate90,
    "affine": A.Affine,
}
COLOUR_STEPS: dict[str, Step] = {
    "brightness_contrast": A.RandomBrightnessContrast,
    "color_jitter": A.ColorJitter,
    "gamma": A.RandomGamma,
    "hue_saturation": A.HueSaturationValue,
    "blur": A.GaussianBlur,
    "box_blur": A.Blur,
    "noise": A.GaussNoise,
}
#: Steps whose operations are geometric or colour, drawn per sample.
MIXED_STEPS: dict[str, Step] = {"randaugment": PairedRandAugment}
#: Every step, in the order a pipeline applies them.
STEPS: dict[str, Step] = {**GEOMETRIC_STEPS, **COLOUR_STEPS, **MIXED_STEPS}

OWN_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "none": {},
    "light": {
        "hflip": {"p": 0.5},
        "vflip": {"p": 0.5},
        "brightness_contrast": {"p": 0.5, "brightness_limit": 0.1, "contrast_limit": 0.1},
    },
    "medium": {
        "hflip": {"p": 0.5},
        "vflip": {"p": 0.5},
        "rotate90": {"p": 0.5},
        "affine": {
            "p": 0.5,
            "scale": (0.9, 1.1),
            "rotate": (-15, 15),
            "translate_percent": (-0.05, 0.05),
        },
        "brightness_contrast": {"p": 0.5, "brightness_limit": 0.2, "contrast_limit": 0.2},
        "gamma": {"p": 0.3, "gamma_limit": (80, 120)},
        "hue_saturation": {
            "p": 0.3,
            "hue_shift_limit": 5,
            "sat_shift_limit": 10,
            "val_shift_limit": 5,
        },
        "blur": {"p": 0.1, "blur_limit": (3, 5)},
    },
    "heavy": {
        "hflip": {"p": 0.5},
        "vflip": {"p": 0.5},
        "rotate90": {"p": 0.5},
        "affine": {
            "p": 0.8,
            "scale": (0.75, 1.25),
            "rotate": (-45, 45),
            "translate_percent": (-0.1, 0.1),
        },
        "brightness_contrast": {"p": 0.8, "brightness_limit": 0.3, "contrast_limit": 0.3},
        "gamma": {"p": 0.5, "gamma_limit": (70, 150)},
        "hue_saturation": {
            "p": 0.5,
            "hue_shift_limit": 10,
            "sat_shift_limit": 20,
            "val_shift_limit": 10,
        },
        "blur": {"p": 0.3, "blur_limit": (3, 7)},
        "noise": {"p": 0.3, "std_range": (0.02, 0.08)},
    },
}
#: Every preset by name: the project's own, then the reference codes'.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {**OWN_PRESETS, **REFERENCE_PRESETS}


def _as_tuples(value: Any) -> Any:
    """YAML lists as the tuples albumentations expects for ranges."""
    return tuple(_as_tuples(item) for item in value) if isinstance(value, list) else value


def resolve_steps(spec: str | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The step arguments of a preset name or of ``{"preset": name, step: overrides}``.

    Overrides update a step's arguments key by key (a step the preset lacks is
    added); ``None`` removes the step. The result is in application order.
    """
    overrides: Mapping[str, Any] = {} if isinstance(spec, str) else spec
    preset = spec if isinstance(spec, str) else str(spec.get("preset", "none"))
    if preset not in PRESETS:
        raise ValueError(f"unknown augmentation preset {preset!r}; known: {sorted(PRESETS)}")
    unknown = sorted(set(overrides) - set(STEPS) - {"preset"})
    if unknown:
        raise ValueError(f"unknown augmentation steps {unknown}; known: {list(STEPS)}")
    steps = {name: dict(arguments) for name, arguments in PRESETS[preset].items()}
    for name, arguments in overrides.items():
        if name == "preset":
            continue
        if arguments is None:
            steps.pop(name, None)
        elif isinstance(arguments, Mapping):
            steps.setdefault(name, {}).update({k: _as_tuples(v) for k, v in arguments.items()})
        else:
            raise ValueError(f"augmentation step {name!r}: expected a mapping or null")
    return {name: steps[name] for name in STEPS if name in steps}


def _build_step(name: str, arguments: dict[str, Any]) -> A.BasicTransform | A.BaseCompose:
    transform = STEPS[name]
    fixed = _FIXED_ARGUMENTS.get(name, {})
    accepted = set(inspect.signature(transform).parameters) - set(fixed)
    unknown = sorted(set(arguments) - accepted)
    if unknown:
        raise ValueError(
            f"augmentation step {name!r}: arguments {unknown} not accepted; "
            f"allowed: {sorted(accepted)}"
        )
    try:
        return transform(**arguments, **fixed)
    except (TypeError, ValueError) as error:
        raise ValueError(f"augmentation step {name!r} {arguments}: {error}") from error


def build_augmentation(spec: str | Mapping[str, Any] = "none") -> A.Compose:
    """The albumentations pipeline of a preset name or a configuration mapping."""
    steps = [_build_step(name, arguments) for name, arguments in resolve_steps(spec).items()]
    return A.Compose(steps, mask_interpolation=cv2.INTER_NEAREST)


def augment(
    pipeline: A.Compose, image: np.ndarray, labels: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (H, W, 3) and ``labels`` (H, W) transformed together, reproducibly from ``seed``.

    All steps draw from one generator pair seeded here, so that steps do not
    repeat each other's draws (seeding each step alike would correlate them).
    """
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    result = pipeline(image=image, mask=labels)
    return result["image"], result["mask"]
