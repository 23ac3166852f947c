"""The torchvision-style steps on an image and its label plane, against torchvision itself."""

import math
import random

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from support.coded_labels import SIZE, assert_aligned, coded_pair, interior

from lesionsoup.core.lesions import FOV_BIT, Lesion
from lesionsoup.training.augment import augment, build_augmentation
from lesionsoup.training.paired_transforms import PairedRandAugment, PatchResizedCrop

PATCH = 512
DRAWS = 3000


def seeded(transform, seed: int = 0):
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return transform


def crop_statistics(boxes: list[tuple[int, int, int, int]]) -> tuple[float, float, float]:
    """Mean area fraction, share of crops wider than tall, share of whole-patch crops.

    A log-uniform aspect in (3/4, 4/3) is wider than tall half the time, a
    uniform one 57 % of the time.
    """
    heights = np.array([box[2] for box in boxes], dtype=float)
    widths = np.array([box[3] for box in boxes], dtype=float)
    whole = (heights == PATCH) & (widths == PATCH)
    return (heights * widths).mean() / PATCH**2, (widths > heights).mean(), whole.mean()


@pytest.mark.parametrize(
    ("scale", "ratio"),
    [((0.08, 1.0), (0.75, 1.3333)), ((0.7, 1.2), (3 / 4, 4 / 3)), ((0.9, 1.0), (3 / 4, 4 / 3))],
)
def test_crop_boxes_are_drawn_as_torchvision_draws_them(scale, ratio):
    crop = seeded(PatchResizedCrop(scale=scale, ratio=ratio))
    ours = [
        crop.get_params_dependent_on_data({"shape": (PATCH, PATCH, 3)}, {})["box"]
        for _ in range(DRAWS)
    ]
    for top, left, height, width in ours:
        assert 0 <= top <= top + height <= PATCH and 0 <= left <= left + width <= PATCH
    torch.manual_seed(0)
    plane = torch.empty(1, PATCH, PATCH, dtype=torch.uint8)
    reference = [T.RandomResizedCrop.get_params(plane, list(scale), list(ratio)) for _ in ours]
    (area, wide, whole), (ref_area, ref_wide, ref_whole) = map(crop_statistics, (ours, reference))
    assert area == pytest.approx(ref_area, abs=0.02)
    assert wide == pytest.approx(ref_wide, abs=0.035)
    assert whole == pytest.approx(ref_whole, abs=0.03)


def test_an_area_above_one_never_fits_and_falls_back_to_the_whole_patch():
    crop = seeded(PatchResizedCrop(scale=(1.1, 1.2)))
    boxes = {
        crop.get_params_dependent_on_data({"shape": (PATCH, PATCH, 3)}, {})["box"]
        for _ in range(50)
    }
    assert boxes == {(0, 0, PATCH, PATCH)}


def test_resized_crop_keeps_image_and_labels_aligned_at_the_patch_size():
    pipeline = build_augmentation({"resized_crop": {"scale": (0.08, 1.0)}})
    zoomed = 0
    for seed in range(30):
        image, labels = coded_pair(seed)
        out_image, out_labels = augment(pipeline, image, labels, seed)
        assert out_image.shape == image.shape and out_labels.shape == labels.shape
        assert_aligned(out_image, out_labels, radius=3)  # bilinear reaches 1 source pixel
        zoomed += not np.array_equal(out_labels, labels)
    assert zoomed > 20


def test_resized_crop_labels_take_the_source_pixel_under_each_pixel_centre():
    crop = PatchResizedCrop()
    _, labels = coded_pair(3)
    labels = labels ^ np.arange(SIZE, dtype=np.uint8)[:, None]  # a new value on every row
    box = (7, 11, 40, 40)  # zoom 96 / 40 = 2.4: OpenCV's INTER_NEAREST is a pixel off here
    centres = ((np.arange(SIZE) + 0.5) * 40 / SIZE).astype(int)
    expected = labels[7 + centres[:, None], 11 + centres[None, :]]
    np.testing.assert_array_equal(crop.apply_to_mask(labels, box=box), expected)


def test_resized_crop_brings_in_no_pixel_from_outside_the_patch():
    pipeline = build_augmentation({"resized_crop": {"scale": (0.08, 1.0)}})
    image = np.full((SIZE, SIZE, 3), 200, dtype=np.uint8)
    labels = np.full((SIZE, SIZE), FOV_BIT | Lesion.HE.bit, dtype=np.uint8)
    for seed in range(10):
        out_image, out_labels = augment(pipeline, image, labels, seed)
        np.testing.assert_array_equal(out_image, image)
        np.testing.assert_array_equal(out_labels, labels)


def test_a_whole_patch_crop_is_the_identity():
    pipeline = build_augmentation({"resized_crop": {"scale": (1.0, 1.0), "ratio": (1.0, 1.0)}})
    image, labels = coded_pair(2)
    out_image, out_labels = augment(pipeline, image, labels, seed=4)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_labels, labels)


#: torchvision's RandAugment table (torchvision 0.28 transforms/v2/_auto_augment.py,
#: RandAugment._AUGMENTATION_SPACE) at FissionFusion's magnitude 15 of 31 bins, for an
#: image HEIGHT x WIDTH: operation -> (|magnitude|, signed); None: no magnitude.
HEIGHT, WIDTH = 512, 384
RANDAUGMENT_AT_15 = {
    "Identity": (None, False),
    "ShearX": (0.15, True),  # linspace(0, 0.3, 31)[15]
    "ShearY": (0.15, True),
    "TranslateX": (150 / 331 * WIDTH / 2, True),  # linspace(0, 150/331 * width, 31)[15]
    "TranslateY": (150 / 331 * HEIGHT / 2, True),
    "Rotate": (15.0, True),  # degrees, linspace(0, 30, 31)[15]
    "Brightness": (0.45, True),  # factor 1 +- 0.45, linspace(0, 0.9, 31)[15]
    "Color": (0.45, True),
    "Contrast": (0.45, True),
    "Sharpness": (0.45, True),
    "Posterize": (6, False),  # bits: 8 - round(15 / 7.5)
    "Solarize": (0.5, False),  # threshold, a fraction of 255: linspace(1, 0, 31)[15]
    "AutoContrast": (None, False),
    "Equalize": (None, False),
}
MOVING = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


def moving_magnitude(name: str) -> float:
    """The table's magnitude of a geometric operation, translations scaled to a SIZE image."""
    size = RANDAUGMENT_AT_15[name][0]
    side = {"TranslateX": WIDTH, "TranslateY": HEIGHT}.get(name)
    return size if side is None else size * SIZE / side


def test_randaugment_draws_torchvisions_operations_and_magnitudes():
    transform = seeded(PairedRandAugment(num_ops=2, magnitude=15, interpolation="bilinear"))
    drawn = [
        transform.get_params_dependent_on_data({"shape": (HEIGHT, WIDTH, 3)}, {})["operations"]
        for _ in range(DRAWS)
    ]
    assert {len(operations) for operations in drawn} == {2}
    flat = [operation for operations in drawn for operation in operations]
    counts = {name: 0 for name in RANDAUGMENT_AT_15}
    signs: dict[str, set[float]] = {name: set() for name in RANDAUGMENT_AT_15}
    for name, magnitude in flat:
        counts[name] += 1  # KeyError: an operation outside the table
        size, signed = RANDAUGMENT_AT_15[name]
        assert abs(magnitude) == pytest.approx(0.0 if size is None else size, rel=1e-6)
        signs[name].add(math.copysign(1.0, magnitude))
    for name, (_, signed) in RANDAUGMENT_AT_15.items():
        assert counts[name] == pytest.approx(len(flat) / len(RANDAUGMENT_AT_15), rel=0.25)
        assert signs[name] == ({-1.0, 1.0} if signed else {1.0}), name


@pytest.mark.parametrize("name", MOVING)
@pytest.mark.parametrize("sign", [-1, 1])
def test_randaugment_moves_labels_with_the_image(name, sign):
    transform = PairedRandAugment(interpolation="bilinear")
    operations = [(name, sign * moving_magnitude(name))]
    image, labels = coded_pair(6)
    out_image = transform.apply(image, operations=operations)
    out_labels = transform.apply_to_mask(labels, operations=operations)
    assert not np.array_equal(out_labels, labels)
    assert_aligned(out_image, out_labels)


@pytest.mark.parametrize("name", MOVING)
def test_randaugment_borders_are_black_and_outside_the_field_of_view(name):
    transform = PairedRandAugment(interpolation="bilinear")
    magnitude = moving_magnitude(name)
    image = np.full((SIZE, SIZE, 3), 200, dtype=np.uint8)
    labels = np.full((SIZE, SIZE), FOV_BIT | Lesion.HE.bit, dtype=np.uint8)
    out_image = transform.apply(image, operations=[(name, magnitude)])
    out_labels = transform.apply_to_mask(labels, operations=[(name, magnitude)])
    assert set(np.unique(out_labels)) == {0, FOV_BIT | Lesion.HE.bit}
    border = interior(out_labels, radius=1) & (out_labels == 0)
    assert border.any() and (out_image[border] == 0).all()


@pytest.mark.parametrize("name", sorted(set(RANDAUGMENT_AT_15) - set(MOVING)))
def test_randaugment_colour_operations_touch_the_image_only(name):
    transform = PairedRandAugment()
    size, signed = RANDAUGMENT_AT_15[name]
    operations = [(name, 0.0 if size is None else -size if signed else size)]
    image = np.random.default_rng(1).integers(20, 200, size=(SIZE, SIZE, 3), dtype=np.uint8)
    _, labels = coded_pair(1)
    np.testing.assert_array_equal(transform.apply_to_mask(labels, operations=operations), labels)
    changed = not np.array_equal(transform.apply(image, operations=operations), image)
    assert changed == (name != "Identity")


def test_randaugment_is_a_pure_function_of_the_seed():
    pipeline = build_augmentation("fissionfusion_heavy")
    image, labels = coded_pair(8)
    first = augment(pipeline, image, labels, seed=3)
    torch.manual_seed(123)  # torch's global generator plays no part
    again = augment(pipeline, image, labels, seed=3)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    others = [augment(pipeline, image, labels, seed=s)[0] for s in range(4, 8)]
    assert not all(np.array_equal(first[0], other) for other in others)


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        (lambda: PatchResizedCrop(scale=(0.5, 0.2)), "low <= high"),
        (lambda: PatchResizedCrop(ratio=(0.0, 1.0)), "positive"),
        (lambda: PairedRandAugment(magnitude=31), "below num_magnitude_bins"),
    ],
)
def test_bad_arguments_are_rejected(transform, message):
    with pytest.raises(ValueError, match=message):
        transform()
