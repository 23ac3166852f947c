"""The augmentation presets of the two reference codes, as steps of ``augment.STEPS``.

``fundseg_*``  the paper authors' presets, fundus-data-toolkit b08e415
               ``data_aug/classification.py`` (``SegmentationDA`` is
               ``ClassificationDA``); their ``default`` is ``medium``, the
               one the paper's config uses (MultiStyle_FundusLesionSegmentation
               b03b725 ``configs/config.yaml``: ``data_augmentation_type:
               default``). Values the reference leaves to albumentations 1.x
               defaults are written out.
``fissionfusion_*``  FissionFusion 8a76dd9 ``utils/utils.py`` ``get_dataset``
               Minimal, Medium, Heavy (torchvision v2 and timm transforms).

Deviations, all forced by albumentations 2.0 or by training on patches:

* ShiftScaleRotate (1.x) is ``Affine`` with the same ranges (shift 0.0625 of
  each side drawn per axis, one scale in 1 +- 0.1 for both axes, rotation
  +- 10 degrees, linear interpolation, constant 0 border), drawn as
  ShiftScaleRotate draws them; the label plane is resampled with nearest
  neighbour in both versions.
* The references augment the whole image before cropping (fundus-data-toolkit
  resizes to 1024 px, augments, then crops 512 px; FissionFusion crops and
  resizes the whole image to 224 px); here every preset acts on the sampled
  patch. Shifts are thus fractions of the patch, not of the image, and a
  rotation or a resized crop brings in patch corners (border 0, outside the
  field of view) rather than image corners.
* FissionFusion's random resized crop takes ``scale`` of the patch's area and
  resizes it back to the patch size (``PatchResizedCrop``): the same zoom and
  aspect range as theirs, over a field of view of one patch instead of the
  image. Their Medium uses timm's bilinear crop, their Minimal and Heavy
  torchvision's with antialiasing; a crop of the patch is only ever enlarged,
  where neither antialiases, so both are bilinear here.
* ColorJitter is albumentations' (its torchvision-like factors and random
  order of operations), not torchvision's; rounding can differ by one level.
* RandAugment keeps torchvision's operations (``PairedRandAugment``), which
  FissionFusion applies to a 224 px image: its translations are a fraction of
  the side, so the same fraction of a patch here.
"""

from __future__ import annotations

from typing import Any

_FUNDSEG_LIGHT: dict[str, dict[str, Any]] = {
    # OneOf([HorizontalFlip(p=0.5), VerticalFlip(p=0.5)]), OneOf's p 0.5 by default
    "flip": {"p": 0.5},
    # ShiftScaleRotate(p=0.5, scale_limit=0.1, rotate_limit=10, border_mode=CONSTANT),
    # shift_limit 0.0625 by default
    "affine": {
        "p": 0.5,
        "scale": (0.9, 1.1),
        "keep_ratio": True,
        "rotate": (-10, 10),
        "translate_percent": (-0.0625, 0.0625),
    },
}
_FUNDSEG_MEDIUM: dict[str, dict[str, Any]] = {
    **_FUNDSEG_LIGHT,
    # RandomBrightnessContrast(p=0.5), limits 0.2 by default
    "brightness_contrast": {
        "p": 0.5,
        "brightness_limit": (-0.2, 0.2),
        "contrast_limit": (-0.2, 0.2),
    },
}
_FUNDSEG_HEAVY: dict[str, dict[str, Any]] = {
    **_FUNDSEG_MEDIUM,
    # HueSaturationValue(p=0.5), shifts 20, 30, 20 by default
    "hue_saturation": {
        "p": 0.5,
        "hue_shift_limit": (-20, 20),
        "sat_shift_limit": (-30, 30),
        "val_shift_limit": (-20, 20),
    },
    "box_blur": {"p": 0.1, "blur_limit": (3, 3)},  # Blur(blur_limit=3, p=0.1)
}

REFERENCE_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "fundseg_light": _FUNDSEG_LIGHT,
    "fundseg_medium": _FUNDSEG_MEDIUM,
    "fundseg_heavy": _FUNDSEG_HEAVY,
    # RandomResizedCrop(scale=(0.9, 1.0)), default ratio (3/4, 4/3)
    "fissionfusion_minimal": {"resized_crop": {"scale": (0.9, 1.0), "ratio": (3 / 4, 4 / 3)}},
    "fissionfusion_medium": {
        # timm RandomResizedCropAndInterpolation(scale=(0.08, 1.0), ratio=(0.75, 1.3333))
        "resized_crop": {"scale": (0.08, 1.0), "ratio": (0.75, 1.3333)},
        "hflip": {"p": 0.5},  # RandomHorizontalFlip(p=0.5)
        # ColorJitter(brightness=(0.6, 1.4), contrast=(0.6, 1.4), saturation=(0.6, 1.4), hue=None)
        "color_jitter": {
            "p": 1.0,
            "brightness": (0.6, 1.4),
            "contrast": (0.6, 1.4),
            "saturation": (0.6, 1.4),
            "hue": 0.0,
        },
    },
    "fissionfusion_heavy": {
        # RandomResizedCrop(scale=(0.7, 1.2)): an area above 1 never fits and is drawn again
        "resized_crop": {"scale": (0.7, 1.2), "ratio": (3 / 4, 4 / 3)},
        # RandAugment(num_ops=2, magnitude=15, interpolation=BILINEAR), 31 bins by default
        "randaugment": {
            "num_ops": 2,
            "magnitude": 15,
            "num_magnitude_bins": 31,
            "interpolation": "bilinear",
        },
    },
}
