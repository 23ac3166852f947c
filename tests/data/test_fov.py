import cv2
import numpy as np
import pytest
from skimage import data

from lesionsoup.data.fov import NoFieldOfView, detect_fov, find_fov, fov_box


def disc_image(
    height: int,
    width: int,
    centre: tuple[float, float],
    radius: float,
    brightness: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A textured fundus-like disc (reddish, darker rim, dark vessels) and its true mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    distance = np.hypot(yy - centre[0], xx - centre[1]) / radius
    disc = distance < 1
    texture = cv2.resize(rng.normal(0, 12, (16, 16)).astype(np.float32), (width, height))
    shade = (1 - 0.5 * distance**2) * brightness
    image = np.zeros((height, width, 3), np.float32)
    for channel, level in enumerate((190, 95, 45)):
        image[..., channel] = (level + texture) * shade
    for angle in np.linspace(0, np.pi, 5):  # dark vessels crossing the disc
        x0, y0 = centre[1] - radius * np.cos(angle), centre[0] - radius * np.sin(angle)
        x1, y1 = centre[1] + radius * np.cos(angle), centre[0] + radius * np.sin(angle)
        cv2.line(image, (int(x0), int(y0)), (int(x1), int(y1)), (20, 5, 2), max(1, height // 150))
    image[~disc] = 0
    return np.clip(image, 0, 255).astype(np.uint8), disc


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def jpeg_roundtrip(image: np.ndarray, quality: int = 70) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)


def test_wide_black_margins():
    image, truth = disc_image(600, 900, (300, 450), 250)
    mask = detect_fov(image)
    assert mask.shape == truth.shape and mask.dtype == bool
    assert iou(mask, truth) > 0.97
    y0, x0, y1, x1 = fov_box(mask)
    assert abs(y0 - 50) <= 3 and abs(y1 - 550) <= 3 and abs(x0 - 200) <= 3 and abs(x1 - 700) <= 3


def test_disc_overflowing_the_frame():
    image, truth = disc_image(500, 600, (250, 300), 340)  # cut at top and bottom
    mask = detect_fov(image)
    assert iou(mask, truth) > 0.97
    assert fov_box(mask)[0] == 0 and fov_box(mask)[2] == 500


def test_no_margin_at_all():
    image, _ = disc_image(400, 400, (200, 200), 400)
    mask = detect_fov(image)
    assert mask.mean() > 0.97


def test_notch_and_white_text_in_a_corner():
    image, truth = disc_image(600, 800, (300, 400), 260)
    notch = np.array([[400 - 20, 40], [400 + 20, 40], [400, 80]], np.int32)
    cv2.fillPoly(image, [notch], (0, 0, 0))
    cv2.fillPoly(truth.view(np.uint8), [notch], 0)
    cv2.putText(image, "OD 2024", (610, 570), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 3)
    cv2.rectangle(image, (10, 10), (120, 60), (255, 255, 255), -1)  # a label sticker
    mask = detect_fov(image)
    assert iou(mask, truth) > 0.97
    assert not mask[520:, 600:].any() and not mask[:70, :130].any()
    assert not mask[40:60, 392:408].any()  # the notch stays outside


def test_dark_underexposed_with_jpeg_noise():
    image, truth = disc_image(600, 800, (300, 400), 270, brightness=0.2)
    rng = np.random.default_rng(1)
    noisy = np.clip(image + rng.integers(0, 6, image.shape), 0, 255).astype(np.uint8)
    mask = detect_fov(jpeg_roundtrip(noisy))
    assert iou(mask, truth) > 0.95


def test_real_photograph():
    retina = data.retina()  # 1411 x 1411 RGB fundus photograph
    mask = detect_fov(retina)
    yy, xx = np.mgrid[: retina.shape[0], : retina.shape[1]]
    visible = retina.max(axis=2) > 30
    assert mask.mean() > 0.5
    assert mask[visible].mean() > 0.98  # the disc is inside
    assert not mask[:40, :40].any() and not mask[-40:, -40:].any()  # black corners are not
    centre_y, centre_x = np.argwhere(mask).mean(axis=0)
    assert abs(centre_y - retina.shape[0] / 2) < 60 and abs(centre_x - retina.shape[1] / 2) < 60


def test_working_grid_box_maps_to_native():
    image, truth = disc_image(1200, 2000, (600, 1000), 500)
    fov = find_fov(image, working_side=256)
    assert fov.step == 8 and fov.mask.shape == (150, 250)
    y0, x0, y1, x1 = fov.box()
    ty0, tx0, ty1, tx1 = fov_box(truth)
    scale = fov.step
    assert y0 <= ty0 + scale and x0 <= tx0 + scale and y1 >= ty1 - scale and x1 >= tx1 - scale
    assert max(abs(y0 - ty0), abs(x0 - tx0), abs(y1 - ty1), abs(x1 - tx1)) <= 2 * scale


def test_all_black_raises():
    with pytest.raises(NoFieldOfView, match="dark"):
        detect_fov(np.zeros((300, 400, 3), np.uint8))


def test_tiny_bright_spot_raises():
    image = np.zeros((400, 400, 3), np.uint8)
    cv2.circle(image, (200, 200), 30, (200, 100, 50), -1)  # 1.8% of the image
    with pytest.raises(NoFieldOfView, match="covers"):
        detect_fov(image)
    assert issubclass(NoFieldOfView, ValueError)


def test_empty_mask_has_no_box():
    with pytest.raises(NoFieldOfView):
        fov_box(np.zeros((10, 10), bool))
