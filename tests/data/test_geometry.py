import numpy as np
import pytest

from lesionsoup.data.geometry import Geometry


@pytest.mark.parametrize(
    ("native", "crop", "size"),
    [
        ((2848, 4288), (0, 700, 2848, 3560), 1536),
        ((1280, 1280), (10, 5, 1270, 1275), 512),
        ((960, 1440), (0, 0, 960, 1440), 256),
    ],
)
def test_native_to_cache_and_back_within_one_pixel(native, crop, size):
    geometry = Geometry.fit(*native, crop, size)
    rng = np.random.default_rng(0)
    y = rng.uniform(crop[0], crop[2], 1000)
    x = rng.uniform(crop[1], crop[3], 1000)
    cy, cx = geometry.to_cache(y, x)
    assert (cy >= 0).all() and (cy <= size).all() and (cx >= 0).all() and (cx <= size).all()
    ny, nx = geometry.to_native(np.round(cy), np.round(cx))
    assert np.abs(ny - y).max() <= 1 / geometry.scale_y
    back_y, back_x = geometry.to_native(cy, cx)
    np.testing.assert_allclose(back_y, y, atol=1e-6)
    np.testing.assert_allclose(back_x, x, atol=1e-6)


def test_fit_keeps_aspect_and_centres_padding():
    geometry = Geometry.fit(2848, 4288, (0, 700, 2848, 3560), 1536)
    assert geometry.resized_w == 1536
    assert geometry.resized_h == round(2848 * 1536 / 2860)
    assert geometry.pad_top == (1536 - geometry.resized_h) // 2
    assert geometry.pad_left == 0


def test_map_to_native_restores_native_shape_and_places_content():
    geometry = Geometry.fit(300, 400, (50, 100, 250, 300), 100)
    plane = np.zeros((100, 100), np.float32)
    plane[40:60, 40:60] = 1.0  # a square in the middle of the cache
    native = geometry.map_to_native(plane)
    assert native.shape == (300, 400)
    ys, xs = np.nonzero(native > 0.5)
    assert abs(ys.mean() - 150) <= 2 and abs(xs.mean() - 200) <= 2
    assert native[:50].max() == 0 and native[:, :100].max() == 0


def test_map_to_native_rejects_wrong_size():
    geometry = Geometry.fit(300, 400, (0, 0, 300, 400), 100)
    with pytest.raises(ValueError, match="100x100"):
        geometry.map_to_native(np.zeros((50, 50)))
