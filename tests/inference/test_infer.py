import numpy as np
import pytest
import torch

from lesionsoup.core.lesions import FOV_BIT, Lesion
from lesionsoup.core.model import ModelSpec, build_model
from lesionsoup.inference.infer import (
    SIDE_MULTIPLE,
    InferenceSettings,
    fov_from_labels,
    gaussian_importance,
    infer,
    predict,
    predict_whole,
    tile_starts,
)


def context_free(images: torch.Tensor) -> torch.Tensor:
    """Two lesion maps, each a function of one pixel: equivariant to flips and shifts."""
    return torch.sigmoid(torch.stack([images.sum(1), images[:, 0] - images[:, 2]], dim=1))


def pointwise(images: torch.Tensor) -> torch.Tensor:
    """``context_free`` as a forward, which only accepts sides divisible by 32."""
    assert images.shape[-2] % SIDE_MULTIPLE == 0 and images.shape[-1] % SIDE_MULTIPLE == 0
    return context_free(images)


def left_heavy(images: torch.Tensor) -> torch.Tensor:
    """Not flip-equivariant: the output grows from left to right whatever the input."""
    ramp = torch.linspace(-2, 2, images.shape[-1])
    return torch.sigmoid(images[:, :1] + ramp)


def random_images(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    spec = ModelSpec(
        encoder="resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 8)
    )
    return build_model(spec).eval()


@pytest.mark.parametrize(("height", "width"), [(16, 24), (1024, 1024), (33, 31)])
def test_gaussian_weights_symmetric_positive_peak_one(height, width):
    weights = gaussian_importance(height, width)
    assert weights.shape == (height, width) and weights.dtype == torch.float32
    assert (weights > 0).all()
    assert torch.equal(weights, weights.flip(0)) and torch.equal(weights, weights.flip(1))
    assert weights.max() == 1.0
    assert weights[height // 2, width // 2] > weights[0, width // 2] > weights[0, 0]


def test_gaussian_sigma_is_an_eighth_of_the_tile():
    weights = gaussian_importance(801, 801).double()
    sigma = 801 / 8
    assert weights[400, 500].item() == pytest.approx(np.exp(-0.5 * (100 / sigma) ** 2), rel=1e-6)
    assert weights[300, 400].item() == pytest.approx(weights[400, 500].item())


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(100, 32, 0.5), (64, 64, 0.5), (50, 64, 0.25), (97, 40, 0.0)]
)
def test_tiles_cover_evenly_with_the_requested_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    tile_length = min(tile, length)
    assert starts[0] == 0 and starts[-1] + tile_length == length
    shared = [tile_length - (b - a) for a, b in zip(starts, starts[1:], strict=False)]
    assert all(s >= overlap * tile - 1 for s in shared)
    assert starts == sorted(set(starts))


def test_one_tile_covering_the_image_equals_whole_image(tiny_unet):
    images = random_images(2, 64, 64)
    whole = predict(tiny_unet, images, "sigmoid")
    sliding = predict(tiny_unet, images, "sigmoid", InferenceSettings(mode="sliding", tile=64))
    assert whole.shape == (2, 4, 64, 64)
    torch.testing.assert_close(sliding, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(whole, predict_whole(tiny_unet, images, "sigmoid"))


def test_many_tiles_of_a_context_free_model_equal_whole_image():
    images = random_images(3, 80, 112)
    settings = InferenceSettings(mode="sliding", tile=32, overlap=0.3, batch_size=5)
    assert len(tile_starts(80, 32, 0.3)) * len(tile_starts(112, 32, 0.3)) > 3 * 5
    probs = infer(pointwise, images, settings)
    torch.testing.assert_close(probs, context_free(images), rtol=0, atol=1e-6)


def test_sliding_window_weights_the_tile_centre_most():
    """Each tile predicts its own constant; a tile's centre takes mostly that tile's value."""
    calls = []

    def tile_index(images: torch.Tensor) -> torch.Tensor:
        values = torch.arange(len(calls), len(calls) + len(images), dtype=torch.float32)
        calls.extend(values.tolist())
        return values[:, None, None, None].expand(-1, 1, *images.shape[-2:]) / 10

    settings = InferenceSettings(mode="sliding", tile=64, overlap=0.5, batch_size=1)
    probs = infer(tile_index, torch.zeros(1, 3, 64, 128), settings)
    assert tile_starts(128, 64, 0.5) == [0, 32, 64]
    # the centres of the three tiles are dominated by their own tile
    assert probs[0, 0, 32, 32] < 0.05 and abs(probs[0, 0, 32, 64] - 0.1) < 0.01
    assert probs[0, 0, 32, 96] > 0.15
    # the weighted average stays between the tiles' values
    assert probs.min() >= 0 and probs.max() <= 0.2 + 1e-6


@pytest.mark.parametrize("mode", ["whole", "sliding"])
def test_flip_tta_changes_nothing_for_an_equivariant_model(mode):
    images = random_images(2, 64, 96)
    plain = InferenceSettings(mode=mode, tile=64)
    flipped = InferenceSettings(mode=mode, tile=64, tta=("horizontal", "vertical", "both"))
    torch.testing.assert_close(infer(pointwise, images, flipped), infer(pointwise, images, plain))


def test_flip_tta_averages_unflipped_views_of_a_non_equivariant_model():
    images = random_images(1, 32, 64)
    plain = infer(left_heavy, images)
    horizontal = infer(left_heavy, images, InferenceSettings(tta=("horizontal",)))
    assert (horizontal - plain).abs().max() > 0.1
    expected = (left_heavy(images) + left_heavy(images.flip(3)).flip(3)) / 2
    torch.testing.assert_close(horizontal, expected)
    every = infer(left_heavy, images, InferenceSettings(tta=("horizontal", "vertical", "both")))
    views = [left_heavy(images.flip(d)).flip(d) for d in [(3,), (2,), (2, 3)]]
    torch.testing.assert_close(every, (left_heavy(images) + sum(views)) / 4)


def test_pixels_outside_the_field_of_view_get_zero():
    images = random_images(2, 64, 64)
    labels = np.zeros((2, 64, 64), np.uint8)
    labels[:, 10:50, 5:60] = FOV_BIT | Lesion.EX.bit
    fov = fov_from_labels(labels)
    assert fov.dtype == bool and fov.sum() == 2 * 40 * 55
    probs = infer(pointwise, images, InferenceSettings(), fov)
    assert (probs[:, :, ~torch.from_numpy(fov[0])] == 0).all()
    inside = torch.from_numpy(fov)[:, None].expand_as(probs)
    torch.testing.assert_close(probs[inside], context_free(images)[inside])
    with pytest.raises(ValueError, match="fov mask"):
        infer(pointwise, images, InferenceSettings(), fov[:, :32])


@pytest.mark.parametrize("padding", ["reflect", "zero"])
@pytest.mark.parametrize("mode", ["whole", "sliding"])
def test_sides_not_divisible_by_32_are_padded_and_cropped_back(padding, mode):
    images = random_images(2, 45, 70)
    settings = InferenceSettings(mode=mode, tile=40, padding=padding)
    probs = infer(pointwise, images, settings)
    assert probs.shape == (2, 2, 45, 70)
    torch.testing.assert_close(probs, context_free(images), rtol=0, atol=1e-6)


def test_reflect_padding_of_a_tiny_image_asks_for_zero_padding():
    with pytest.raises(ValueError, match="padding='zero'"):
        infer(pointwise, random_images(1, 16, 16))
    probs = infer(pointwise, random_images(1, 16, 16), InferenceSettings(padding="zero"))
    assert probs.shape == (1, 2, 16, 16)


def test_batch_size_does_not_change_the_result(tiny_unet):
    images = random_images(3, 64, 96)
    results = [
        predict(tiny_unet, images, "sigmoid", InferenceSettings(mode="sliding", tile=64, **extra))
        for extra in ({"batch_size": 1}, {"batch_size": 7})
    ]
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-5)
    whole = [
        predict(tiny_unet, images, "sigmoid", InferenceSettings(batch_size=size)) for size in (1, 2)
    ]
    torch.testing.assert_close(whole[0], whole[1], rtol=0, atol=1e-5)


def test_settings_round_trip_and_reject_bad_values():
    settings = InferenceSettings(mode="sliding", tile=256, overlap=0.25, tta=["vertical"])
    assert settings.tta == ("vertical",)
    assert InferenceSettings.from_dict(settings.as_dict()) == settings
    assert settings.as_dict()["tta"] == ["vertical"]
    bad = [
        {"mode": "tiles"},
        {"tile": 0},
        {"overlap": 1.0},
        {"tta": ("diagonal",)},
        {"tta": ("both", "both")},
        {"batch_size": 0},
        {"padding": "edge"},
    ]
    for values in bad:
        with pytest.raises(ValueError, match=next(iter(values))):
            InferenceSettings(**values)
    with pytest.raises(ValueError, match="unknown inference settings"):
        InferenceSettings.from_dict({"mode": "whole", "tiles": 3})


def test_images_must_be_a_batch_of_rgb():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        infer(pointwise, torch.zeros(3, 32, 32))
