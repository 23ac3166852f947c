"""The reference codes' presets: their transforms and values as read in the reference code."""

import albumentations as A
import cv2
import numpy as np
import pytest
from support.coded_labels import LABEL_VALUES, SIZE, coded_pair, geometric_only, interior

from lesionsoup.core.lesions import FOV_BIT, Lesion
from lesionsoup.training.augment import PRESETS, augment, build_augmentation
from lesionsoup.training.paired_transforms import PairedRandAugment, PatchResizedCrop

# Each preset as its reference writes it (1.x albumentations, torchvision v2, timm names),
# defaults of the reference's library written out:
#   fundseg_*: fundus-data-toolkit@b08e415:src/fundus_data_toolkit/data_aug/classification.py
#     light 31-38, medium 41-48 (light + 45), heavy 51-59 (medium + 55-56); default 62-63 is
#     medium; SegmentationDA = ClassificationDA (data_aug/segmentation.py:3). albumentations
#     1.x defaults: OneOf p 0.5, ShiftScaleRotate shift_limit 0.0625, RandomBrightnessContrast
#     limits 0.2, HueSaturationValue shifts 20 / 30 / 20.
#   fissionfusion_*: BioMedIA-MBZUAI/FissionFusion@8a76dd9:utils/utils.py
#     Minimal 108-111, Medium 121-128, Heavy 139-143; torchvision defaults: RandomResizedCrop
#     ratio (3/4, 4/3), RandAugment num_magnitude_bins 31.
FUNDSEG_LIGHT = [
    ("OneOf[HorizontalFlip, VerticalFlip]", {"p": 0.5}),
    (
        "ShiftScaleRotate",
        {"p": 0.5, "shift_limit": 0.0625, "scale_limit": 0.1, "rotate_limit": 10},
    ),
]
FUNDSEG_MEDIUM = [
    *FUNDSEG_LIGHT,
    ("RandomBrightnessContrast", {"p": 0.5, "brightness_limit": 0.2, "contrast_limit": 0.2}),
]
REFERENCE = {
    "fundseg_light": FUNDSEG_LIGHT,
    "fundseg_medium": FUNDSEG_MEDIUM,
    "fundseg_heavy": [
        *FUNDSEG_MEDIUM,
        ("HueSaturationValue", {"p": 0.5, "hue": 20, "saturation": 30, "value": 20}),
        ("Blur", {"p": 0.1, "blur_limit": 3}),
    ],
    "fissionfusion_minimal": [
        ("RandomResizedCrop", {"scale": (0.9, 1.0), "ratio": (3 / 4, 4 / 3)})
    ],
    "fissionfusion_medium": [
        ("RandomResizedCropAndInterpolation", {"scale": (0.08, 1.0), "ratio": (0.75, 1.3333)}),
        ("RandomHorizontalFlip", {"p": 0.5}),
        (
            "ColorJitter",
            {"brightness": (0.6, 1.4), "contrast": (0.6, 1.4), "saturation": (0.6, 1.4)},
        ),
    ],
    "fissionfusion_heavy": [
        ("RandomResizedCrop", {"scale": (0.7, 1.2), "ratio": (3 / 4, 4 / 3)}),
        ("RandAugment", {"num_ops": 2, "magnitude": 15, "bins": 31, "interpolation": "bilinear"}),
    ],
}


def one_of_flips(t, p):
    assert type(t) is A.OneOf and t.p == p
    assert [type(child) for child in t.transforms] == [A.HorizontalFlip, A.VerticalFlip]
    assert list(t.transforms_ps) == [0.5, 0.5]  # the chosen one is always applied


def shift_scale_rotate(t, p, shift_limit, scale_limit, rotate_limit):
    assert type(t) is A.Affine and t.p == p
    assert t.scale == {
        "x": (1 - scale_limit, 1 + scale_limit),
        "y": (1 - scale_limit, 1 + scale_limit),
    }
    assert t.keep_ratio  # one scale for both axes, as ShiftScaleRotate draws
    assert t.rotate == (-rotate_limit, rotate_limit)
    assert t.translate_percent == {
        "x": (-shift_limit, shift_limit),
        "y": (-shift_limit, shift_limit),
    }
    assert t.shear == {"x": (0.0, 0.0), "y": (0.0, 0.0)}
    assert (t.interpolation, t.mask_interpolation) == (cv2.INTER_LINEAR, cv2.INTER_NEAREST)
    assert (t.border_mode, t.fill, t.fill_mask) == (cv2.BORDER_CONSTANT, 0, 0)


def brightness_contrast(t, p, brightness_limit, contrast_limit):
    assert type(t) is A.RandomBrightnessContrast and t.p == p and t.brightness_by_max
    assert t.brightness_limit == (-brightness_limit, brightness_limit)
    assert t.contrast_limit == (-contrast_limit, contrast_limit)


def hue_saturation_value(t, p, hue, saturation, value):
    assert type(t) is A.HueSaturationValue and t.p == p
    assert (t.hue_shift_limit, t.sat_shift_limit, t.val_shift_limit) == (
        (-hue, hue),
        (-saturation, saturation),
        (-value, value),
    )


def box_blur(t, p, blur_limit):
    assert type(t) is A.Blur and t.p == p and t.blur_limit == (blur_limit, blur_limit)


def resized_crop(t, scale, ratio):
    assert type(t) is PatchResizedCrop and t.p == 1.0
    assert t.scale == scale and t.ratio == pytest.approx(ratio)


def horizontal_flip(t, p):
    assert type(t) is A.HorizontalFlip and t.p == p


def color_jitter(t, brightness, contrast, saturation):
    assert type(t) is A.ColorJitter and t.p == 1.0  # torchvision's always applies
    assert (t.brightness, t.contrast, t.saturation) == (brightness, contrast, saturation)
    assert t.hue == (0.0, 0.0)  # hue=None


def rand_augment(t, num_ops, magnitude, bins, interpolation):
    assert type(t) is PairedRandAugment and t.p == 1.0
    assert (t.num_ops, t.magnitude, t.num_magnitude_bins) == (num_ops, magnitude, bins)
    assert t.interpolation == interpolation


CHECKS = {
    "OneOf[HorizontalFlip, VerticalFlip]": one_of_flips,
    "ShiftScaleRotate": shift_scale_rotate,
    "RandomBrightnessContrast": brightness_contrast,
    "HueSaturationValue": hue_saturation_value,
    "Blur": box_blur,
    "RandomResizedCrop": resized_crop,
    "RandomResizedCropAndInterpolation": resized_crop,
    "RandomHorizontalFlip": horizontal_flip,
    "ColorJitter": color_jitter,
    "RandAugment": rand_augment,
}
OWN = {"none", "light", "medium", "heavy"}


def test_presets_are_the_projects_and_the_references():
    assert set(PRESETS) == OWN | set(REFERENCE)
    assert all(name.isidentifier() for name in PRESETS)  # they name grid recipes


@pytest.mark.parametrize("preset", sorted(REFERENCE))
def test_each_preset_has_the_references_transforms_in_its_order(preset):
    transforms = build_augmentation(preset).transforms
    assert len(transforms) == len(REFERENCE[preset])
    for transform, (name, values) in zip(transforms, REFERENCE[preset], strict=True):
        CHECKS[name](transform, **values)


def test_fundseg_flips_one_axis_half_the_time():
    pipeline = build_augmentation({"preset": "fundseg_light", "affine": None})
    image = np.arange(SIZE * SIZE * 3, dtype=np.uint8).reshape(SIZE, SIZE, 3)
    labels = np.zeros((SIZE, SIZE), dtype=np.uint8)
    flips = {"none": image, "horizontal": image[:, ::-1], "vertical": image[::-1]}
    counts = dict.fromkeys(flips, 0)
    for seed in range(400):
        out = augment(pipeline, image, labels, seed)[0]
        (name,) = [name for name, flipped in flips.items() if np.array_equal(out, flipped)]
        counts[name] += 1
    assert counts["none"] == pytest.approx(200, abs=30)
    assert counts["horizontal"] == pytest.approx(100, abs=25)
    assert counts["vertical"] == pytest.approx(100, abs=25)


@pytest.mark.parametrize("preset", sorted(REFERENCE))
def test_label_bits_stay_intact_and_a_seed_gives_one_sample(preset):
    pipeline = build_augmentation(preset)
    image, labels = coded_pair(9)
    samples = []
    for seed in range(12):
        out_image, out_labels = augment(pipeline, image, labels, seed)
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        assert out_labels.shape == labels.shape and out_labels.dtype == np.uint8
        assert set(np.unique(out_labels)) <= set(LABEL_VALUES)
        again = augment(pipeline, image, labels, seed)
        np.testing.assert_array_equal(again[0], out_image)
        np.testing.assert_array_equal(again[1], out_labels)
        samples.append(out_image)
    assert len({sample.tobytes() for sample in samples}) > 6


def brought_in(spec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An all-field-of-view patch augmented, and the pixels its geometry brought in."""
    image = np.full((SIZE, SIZE, 3), 120, dtype=np.uint8)
    labels = np.full((SIZE, SIZE), FOV_BIT | Lesion.EX.bit, dtype=np.uint8)
    out_image, out_labels = augment(build_augmentation(spec), image, labels, seed)
    assert set(np.unique(out_labels)) <= {0, FOV_BIT | Lesion.EX.bit}
    return out_image, interior(out_labels, radius=1) & (out_labels == 0)


def test_pixels_an_affine_brings_in_are_black_and_outside_the_field_of_view():
    borders = [brought_in(geometric_only("fundseg_heavy"), seed) for seed in range(30)]
    assert sum(border.any() for _, border in borders) > 3
    assert all((image[border] == 0).all() for image, border in borders)


def test_randaugment_clears_the_field_of_view_where_it_brings_pixels_in():
    """Its colour operations may then lift the black border, as colour steps after an affine do."""
    borders = [brought_in("fissionfusion_heavy", seed) for seed in range(30)]
    assert sum(border.any() for _, border in borders) > 3
