"""ROI-space masks (MAPLES-DR's AdditionalData) placed back into the photograph's frame."""

import cv2
import numpy as np
import pytest

from lesionsoup.data.manifest import (
    MASK_COLUMNS,
    ManifestError,
    format_roi,
    manifest_from_rows,
    parse_roi,
)
from lesionsoup.data.preprocess import downscale_keeping_lesions, prepare_photograph
from lesionsoup.data.roi import place_in_frame

#: A MESSIDOR-shaped photograph (960 x 1440 at 5/8) whose fundus is right of centre.
FRAME = (600, 900)
DISC = (480, 300, 290)  # x, y, radius
LESION = (560, 200)  # x, y of a lesion inside the fundus
ROI_SIDE = 1500
CACHE = 128


def roi_space(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """What MAPLES-DR's graders drew on: the box cut out of the photograph (zero outside
    it) and resized to 1500 x 1500, thresholded at half."""
    x0, y0, x1, y1 = box
    padded = cv2.copyMakeBorder(mask, 1000, 1000, 1000, 1000, cv2.BORDER_CONSTANT, value=0)
    cut = padded[y0 + 1000 : y1 + 1000, x0 + 1000 : x1 + 1000]
    resized = cv2.resize(cut, (ROI_SIDE, ROI_SIDE), interpolation=cv2.INTER_LINEAR)
    return np.where(resized >= 128, 255, 0).astype(np.uint8)


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of a mask's lesion pixels, pixel centres at .5."""
    ys, xs = np.nonzero(mask)
    assert len(xs), "the lesion vanished"
    return xs.mean() + 0.5, ys.mean() + 0.5


# A box around the fundus (as MESSIDOR-ROIs.csv has them) and one off it, reaching
# past the top and bottom edges: neither is centred on the photograph.
@pytest.mark.parametrize("box", [(190, 10, 770, 590), (150, -20, 790, 620)])
def test_lesion_lands_where_it_was_drawn_in_the_cache(box):
    """The cache is built as ``preprocess`` builds it once the mask is placed: the
    photograph's field-of-view crop and fit, then the lesion-keeping downscale."""
    photograph = np.zeros((*FRAME, 3), np.uint8)
    cv2.circle(photograph, DISC[:2], DISC[2], (40, 90, 160), -1)
    drawn = np.zeros(FRAME, np.uint8)
    cv2.circle(drawn, LESION, 4, 255, -1)

    placed = place_in_frame(roi_space(drawn, box), format_roi(*box), FRAME)
    assert placed.shape == FRAME
    assert np.hypot(*np.subtract(centroid(placed), centroid(drawn))) < 1.0

    prepared = prepare_photograph(photograph, CACHE, "synthetic photograph")
    geometry = prepared.geometry
    y0, x0, y1, x1 = prepared.crop
    small = downscale_keeping_lesions(placed[y0:y1, x0:x1], geometry.resized_w, geometry.resized_h)
    cache = np.zeros((CACHE, CACHE), bool)
    top, left = geometry.pad_top, geometry.pad_left
    cache[top : top + geometry.resized_h, left : left + geometry.resized_w] = small
    expected_y, expected_x = geometry.to_cache(LESION[1] + 0.5, LESION[0] + 0.5)
    found_x, found_y = centroid(cache)
    assert abs(found_x - expected_x) <= 1 and abs(found_y - expected_y) <= 1


def test_a_single_roi_pixel_survives_downscaling():
    mask = np.zeros((30, 30), np.uint8)
    mask[13, 22] = 1
    placed = place_in_frame(mask, "5 2 15 12", (20, 20))
    assert np.argwhere(placed).tolist() == [[2 + 13 // 3, 5 + 22 // 3]]
    assert set(np.unique(placed)) == {0, 255}


def test_upscaling_keeps_every_pixel_in_its_place():
    mask = np.zeros((4, 4), np.uint8)
    mask[1, 2] = 255
    placed = place_in_frame(mask, "1 3 9 11", (12, 10))
    expected = np.zeros((12, 10), np.uint8)
    expected[3 + 2 : 3 + 4, 1 + 4 : 1 + 6] = 255
    np.testing.assert_array_equal(placed, expected)


def test_box_past_the_edges_is_cut_off():
    mask = np.full((6, 6), 255, np.uint8)
    mask[:, :3] = 0
    placed = place_in_frame(mask, "-3 -2 3 4", (5, 5))
    expected = np.zeros((5, 5), np.uint8)
    expected[:4, :3] = 255
    np.testing.assert_array_equal(placed, expected)


def placed_by_cv2_nearest(
    mask: np.ndarray, box: tuple[int, int, int, int], frame: tuple[int, int]
) -> np.ndarray:
    """The reference for ``nearest``: cv2.INTER_NEAREST to the box, pasted on a canvas
    wide enough for any box, then the frame cut out of it."""
    x0, y0, x1, y1 = box
    resized = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST) > 0
    margin = 2 * max(frame)
    canvas = np.zeros((frame[0] + 2 * margin, frame[1] + 2 * margin), bool)
    canvas[y0 + margin : y1 + margin, x0 + margin : x1 + margin] = resized
    return canvas[margin : margin + frame[0], margin : margin + frame[1]]


@pytest.mark.parametrize("box", [(190, 10, 770, 590), (150, -20, 790, 620), (300, 100, 330, 130)])
def test_nearest_places_the_map_as_cv2_inter_nearest(box):
    """Specks of one ROI pixel: nearest keeps those it samples (bit for bit as cv2), the
    default every one, so it marks more pixels."""
    rng = np.random.default_rng(sum(box))
    values = rng.integers(1, 256, (ROI_SIDE, ROI_SIDE))
    mask = np.where(rng.random((ROI_SIDE, ROI_SIDE)) < 0.001, values, 0).astype(np.uint8)
    nearest = place_in_frame(mask, format_roi(*box), FRAME, "nearest")
    assert set(np.unique(nearest)) == {0, 255}
    np.testing.assert_array_equal(nearest > 0, placed_by_cv2_nearest(mask, box, FRAME))
    preserve = place_in_frame(mask, format_roi(*box), FRAME)
    assert (preserve > 0).sum() > (nearest > 0).sum()


def test_place_in_frame_refuses_what_it_cannot_place():
    mask = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="needs a region of interest"):
        place_in_frame(mask, "", (4, 4))
    with pytest.raises(ValueError, match="single-channel"):
        place_in_frame(np.zeros((4, 4, 3), np.uint8), "0 0 4 4", (4, 4))
    with pytest.raises(ValueError, match="not four integers"):
        place_in_frame(mask, "0 0 4", (4, 4))
    with pytest.raises(ValueError, match="is empty"):
        place_in_frame(mask, "4 0 4 4", (4, 4))
    with pytest.raises(ValueError, match="preserve.*nearest"):
        place_in_frame(mask, "0 0 4 4", (4, 4), "area")  # type: ignore[arg-type]


def manifest_row(roi: str) -> dict[str, object]:
    return {
        "image_id": "a",
        "dataset": "MAPLES",
        "split": "train",
        "patient": "a",
        "image_path": "/data/a.tif",
        **{column: "" for column in MASK_COLUMNS},
        "mask_roi": roi,
        "width": 12,
        "height": 8,
    }


def test_manifest_roi_cell():
    assert parse_roi(format_roi(4, -1, 13, 8)) == (4, -1, 13, 8)
    assert parse_roi("") is None
    frame = manifest_from_rows([manifest_row("4 -1 13 8")], "sample")
    assert frame.loc[0, "mask_roi"] == "4 -1 13 8"
    without = {key: value for key, value in manifest_row("").items() if key != "mask_roi"}
    assert manifest_from_rows([without], "sample").loc[0, "mask_roi"] == ""
    with pytest.raises(ManifestError, match="sample: row 0: region of interest '12 0 20 8' misses"):
        manifest_from_rows([manifest_row("12 0 20 8")], "sample")
    with pytest.raises(ManifestError, match="sample: row 0: .* not four integers"):
        manifest_from_rows([manifest_row("0 0 x 8")], "sample")
