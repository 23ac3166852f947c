import numpy as np
import pytest
import yaml
from support import REPO
from support.coded_labels import SIZE, assert_aligned, coded_pair, geometric_only

from lesionsoup.core.lesions import FOV_BIT, Lesion
from lesionsoup.training.augment import (
    COLOUR_STEPS,
    GEOMETRIC_STEPS,
    PRESETS,
    augment,
    build_augmentation,
    resolve_steps,
)


def test_presets_exist_and_none_is_identity():
    assert {"none", "light", "medium", "heavy"} <= set(PRESETS)
    image, labels = coded_pair(0)
    out_image, out_labels = augment(build_augmentation("none"), image, labels, seed=1)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_labels, labels)


@pytest.mark.parametrize(
    ("preset", "radius"),
    [
        *((name, 2) for name in ("light", "medium", "heavy")),
        # the references' scaled crops and shears move edges further
        *((name, 3) for name in ("fundseg_light", "fundseg_heavy")),
        *((name, 3) for name in ("fissionfusion_minimal", "fissionfusion_medium")),
    ],
)
def test_geometry_keeps_image_and_labels_aligned(preset, radius):
    """RandAugment's operations are tested one by one (tests/training/test_paired_transforms.py)."""
    pipeline = build_augmentation(geometric_only(preset))
    changed = 0
    for seed in range(40):
        image, labels = coded_pair(seed)
        out_image, out_labels = augment(pipeline, image, labels, seed)
        changed += not np.array_equal(out_labels, labels)
        assert_aligned(out_image, out_labels, radius=radius)
    assert changed > 10


def test_affine_border_is_black_and_outside_the_field_of_view():
    pipeline = build_augmentation(
        {"affine": {"p": 1.0, "scale": (0.5, 0.5), "rotate": 0, "translate_percent": 0}}
    )
    image = np.full((SIZE, SIZE, 3), 200, dtype=np.uint8)
    labels = np.full((SIZE, SIZE), FOV_BIT | Lesion.HE.bit, dtype=np.uint8)
    out_image, out_labels = augment(pipeline, image, labels, seed=0)
    border = out_labels == 0
    assert 0.5 < border.mean() < 0.9  # a half-size copy leaves three quarters empty
    assert (out_image[border] == 0).all()
    assert set(np.unique(out_labels)) == {0, FOV_BIT | Lesion.HE.bit}


def test_colour_steps_leave_labels_untouched():
    pipeline = build_augmentation({"preset": "heavy", **dict.fromkeys(GEOMETRIC_STEPS)})
    image, labels = coded_pair(3)
    changed_images = 0
    for seed in range(10):
        out_image, out_labels = augment(pipeline, image, labels, seed)
        np.testing.assert_array_equal(out_labels, labels)
        changed_images += not np.array_equal(out_image, image)
    assert changed_images >= 5


def mean_change(preset: str) -> float:
    pipeline = build_augmentation(preset)
    image, labels = coded_pair(5)
    changes = [
        np.abs(augment(pipeline, image, labels, seed)[0].astype(float) - image).mean()
        for seed in range(30)
    ]
    return float(np.mean(changes))


def test_heavy_changes_more_than_light():
    light, heavy = mean_change("light"), mean_change("heavy")
    assert light > 0
    assert heavy > 1.2 * light


def test_same_seed_same_result_and_different_seed_different():
    pipeline = build_augmentation("heavy")
    image, labels = coded_pair(7)
    first = augment(pipeline, image, labels, seed=11)
    again = augment(pipeline, image, labels, seed=11)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    others = [augment(pipeline, image, labels, seed=s)[0] for s in range(12, 16)]
    assert not all(np.array_equal(first[0], other) for other in others)


def test_steps_are_not_drawn_alike():
    """Seeding every step with the same seed would flip both axes together."""
    pipeline = build_augmentation({"hflip": {"p": 0.5}, "vflip": {"p": 0.5}})
    image = np.arange(SIZE * SIZE * 3, dtype=np.uint8).reshape(SIZE, SIZE, 3)
    labels = np.zeros((SIZE, SIZE), dtype=np.uint8)
    flips = {
        "none": image,
        "horizontal": image[:, ::-1],
        "vertical": image[::-1],
        "both": image[::-1, ::-1],
    }
    outcomes = set()
    for seed in range(40):
        out = augment(pipeline, image, labels, seed)[0]
        outcomes |= {name for name, flipped in flips.items() if np.array_equal(out, flipped)}
    assert outcomes == set(flips)


def test_overrides_update_add_and_drop_steps():
    steps = resolve_steps(
        {
            "preset": "medium",
            "affine": {"p": 0.9, "rotate": [-30, 30]},
            "noise": {"p": 0.2},
            "blur": None,
        }
    )
    assert steps["affine"]["p"] == 0.9
    assert steps["affine"]["rotate"] == (-30, 30)
    assert steps["affine"]["scale"] == PRESETS["medium"]["affine"]["scale"]
    assert "blur" not in steps
    assert steps["noise"] == {"p": 0.2}
    assert list(steps) == [name for name in {**GEOMETRIC_STEPS, **COLOUR_STEPS} if name in steps]
    assert PRESETS["medium"]["affine"]["p"] == 0.5  # the preset itself is untouched
    assert (
        len(build_augmentation({"preset": "medium", "blur": None}).transforms)
        == len(PRESETS["medium"]) - 1
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("extreme", "unknown augmentation preset"),
        ({"preset": "light", "twirl": {}}, "unknown augmentation steps"),
        ({"affine": {"mask_interpolation": 1}}, "not accepted"),
        ({"blur": {"radius": 3}}, "not accepted"),
        ({"blur": 3}, "expected a mapping"),
        ({"gamma": {"gamma_limit": "bright"}}, "'gamma'"),
    ],
)
def test_bad_configuration_is_rejected_clearly(spec, message):
    with pytest.raises(ValueError, match=message):
        build_augmentation(spec)


def test_the_config_schema_lists_every_preset():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    choices = schema["$defs"]["settings"]["properties"]["augmentation"]["oneOf"][0]["enum"]
    assert choices == list(PRESETS)
