import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from support.preprocess import DISC_COLOUR, blank, manifest_of, write_case

from lesionsoup.core.fingerprint import digest
from lesionsoup.core.lesions import FOV_BIT, IGNORE_BIT, Lesion
from lesionsoup.data.cache import Cache, CacheWriter
from lesionsoup.data.preprocess import (
    BadImageError,
    MaskRules,
    area_coverage,
    build_cache,
    cache_settings,
    downscale_keeping_lesions,
    lesions_from_coverage,
    mask_paths,
    preprocess_image,
    read_mask_in_frame,
)


def test_shapes_geometry_and_fov_bit(tmp_path):
    mask = blank()
    cv2.circle(mask, (200, 150), 20, 255, -1)
    row = write_case(tmp_path, "a", masks={"EX": mask})
    entry = preprocess_image(row, 128, MaskRules())
    assert entry.image.shape == (128, 128, 3) and entry.image.dtype == np.uint8
    assert entry.labels.shape == (128, 128) and entry.labels.dtype == np.uint8
    geometry = entry.geometry
    assert abs((geometry.crop_y1 - geometry.crop_y0) - 270) <= 4  # the disc's diameter
    assert geometry.resized_h == 128 or geometry.resized_w == 128
    # RGB order: red is the brightest channel of the disc
    assert tuple(entry.image[64, 64]) == DISC_COLOUR[::-1]
    fov = (entry.labels & FOV_BIT) > 0
    inside = entry.image[..., 0] >= DISC_COLOUR[2] // 2
    assert (fov == inside).mean() > 0.99 and fov[64, 64] and not fov[0, 0] and not fov[127, 127]
    # the lesion sits in the middle and carries the FOV bit too
    assert entry.labels[64, 64] == FOV_BIT | Lesion.EX.bit
    assert not (entry.labels & Lesion.HE.bit).any()


def test_native_point_maps_to_its_lesion_and_back(tmp_path):
    mask = blank(600, 800)
    cv2.circle(mask, (330, 190), 3, 255, -1)  # a small blob at native (y=190, x=330)
    row = write_case(tmp_path, "g", 600, 800, masks={"HE": mask})
    entry = preprocess_image(row, 200, MaskRules())
    cy, cx = entry.geometry.to_cache(190.5, 330.5)
    lesion = np.argwhere(entry.labels & Lesion.HE.bit)
    assert len(lesion) > 0
    assert np.abs(lesion + 0.5 - [float(cy), float(cx)]).max() <= 1.0
    back_y, back_x = entry.geometry.to_native(cy, cx)
    assert abs(back_y - 190.5) < 1e-6 and abs(back_x - 330.5) < 1e-6


@pytest.mark.parametrize("size", [512, 256])  # 256: ~11 native pixels per cache pixel
def test_one_pixel_lesion_survives_an_idrid_sized_image(tmp_path, size):
    mask = blank(2848, 4288)
    mask[1001, 2001] = 255
    row = write_case(tmp_path, "big", 2848, 4288, masks={"MA": mask}, suffix=".jpg")
    entry = preprocess_image(row, size, MaskRules())
    found = np.argwhere(entry.labels & Lesion.MA.bit)
    assert 1 <= len(found) <= 4
    cy, cx = entry.geometry.to_cache(1001.5, 2001.5)
    assert np.abs(found + 0.5 - [float(cy), float(cx)]).max() <= 1.5


def test_every_small_component_survives_without_inflating():
    rng = np.random.default_rng(7)
    native = np.zeros((1500, 1500), np.uint8)
    grid = [(y, x) for y in range(40, 1460, 60) for x in range(40, 1460, 60)]
    for y, x in grid:  # specks of 1 to ~12 pixels, 60 px (~10 cache px) apart
        height, width = rng.integers(1, 4, size=2)
        native[y + rng.integers(-8, 8) :, x + rng.integers(-8, 8) :][:height, :width] = 1
    count, _, _, centroids = cv2.connectedComponentsWithStats(native, connectivity=8)
    out = downscale_keeping_lesions(native * np.uint8(255), 256, 256)
    naive = cv2.resize(native * 255, (256, 256), interpolation=cv2.INTER_AREA) >= 128
    scale = 256 / 1500
    lost, naive_lost = 0, 0
    for x, y in centroids[1:]:
        cy, cx = int((y + 0.5) * scale), int((x + 0.5) * scale)
        lost += not out[cy - 1 : cy + 2, cx - 1 : cx + 2].any()
        naive_lost += not naive[cy - 1 : cy + 2, cx - 1 : cx + 2].any()
    assert count - 1 == len(grid)
    assert lost == 0
    assert naive_lost > len(grid) // 2  # the plain majority rule would erase most of them
    assert out.sum() <= 4 * len(grid)


def test_large_lesions_keep_their_area_and_thin_strokes_their_course():
    native = np.zeros((900, 900), np.uint8)
    cv2.circle(native, (300, 300), 120, 255, -1)
    cv2.line(native, (500, 700), (880, 700), 255, 1)  # 1 px wide: 1/6 of a cache pixel
    out = downscale_keeping_lesions(native, 150, 150)
    disc_area = np.pi * 120**2 / 36
    assert abs(out[:110].sum() - disc_area) / disc_area < 0.05
    stroke = out[110:]
    assert stroke.any(axis=0)[85:145].all()  # continuous along its length
    assert stroke.sum(axis=0).max() <= 2  # and still thin


def test_mask_rules_threshold_on_antialiased_masks(tmp_path):
    mask = blank()
    cv2.circle(mask, (200, 150), 30, 255, -1, lineType=cv2.LINE_AA)
    mask[mask == 255] = 0  # only the anti-aliased fringe and a faint ring remain...
    cv2.circle(mask, (200, 150), 20, 200, -1)  # ...around a core of 200
    cv2.circle(mask, (200, 150), 26, 60, 3)  # a faint ring (FGADR-style low values)
    row = write_case(tmp_path, "aa", masks={"CWS": mask})
    strict = preprocess_image(row, 300, MaskRules(threshold=128)).labels & Lesion.CWS.bit
    loose = preprocess_image(row, 300, MaskRules(threshold=1)).labels & Lesion.CWS.bit
    assert strict.any() and (loose >= strict).all()
    assert loose.astype(bool).sum() > 1.5 * strict.astype(bool).sum()


@pytest.mark.parametrize(
    ("policy", "lesion_px", "ignored"),
    [("ignore", False, True), ("lesion", True, False), ("background", False, False)],
)
def test_uncertain_value_policies(tmp_path, policy, lesion_px, ignored):
    mask = blank()
    mask[100:140, 150:190] = 255  # certain
    mask[160:200, 210:250] = 127  # uncertain (RETLES)
    row = write_case(tmp_path, "u", masks={"HE": mask})
    rules = MaskRules(threshold=1, uncertain_value=127, uncertain_as=policy)
    entry = preprocess_image(row, 300, rules)
    geometry = entry.geometry
    cy, cx = (int(v) for v in geometry.to_cache(120, 170))
    uy, ux = (int(v) for v in geometry.to_cache(180, 230))
    assert entry.labels[cy, cx] & Lesion.HE.bit and not entry.labels[cy, cx] & IGNORE_BIT
    assert bool(entry.labels[uy, ux] & Lesion.HE.bit) == lesion_px
    assert bool(entry.labels[uy, ux] & IGNORE_BIT) == ignored
    assert bool((entry.labels & IGNORE_BIT).any()) == ignored


def test_colour_masks_and_unions(tmp_path):
    red = np.zeros((300, 400, 3), np.uint8)
    red[100:120, 150:170, 2] = 255  # BGR on disk: red only (IDRiD style)
    other = blank()
    other[180:200, 230:250] = 255
    row = write_case(tmp_path, "c", masks={"HE": [red, other]})
    assert len(mask_paths(row["mask_HE"])) == 2 and mask_paths(np.nan) == []
    entry = preprocess_image(row, 400, MaskRules())
    for y, x in ((110, 160), (190, 240)):
        cy, cx = (int(v) for v in entry.geometry.to_cache(y, x))
        assert entry.labels[cy, cx] & Lesion.HE.bit


def test_mask_size_mismatch_names_the_mask(tmp_path):
    row = write_case(tmp_path, "m", masks={"EX": blank(299, 400)})
    with pytest.raises(BadImageError, match=r"m_EX0\.tif.*400x299.*400x300"):
        preprocess_image(row, 64, MaskRules())


def test_truncated_jpeg_names_the_image(tmp_path):
    row = write_case(tmp_path, "t", suffix=".jpg")
    path = Path(row["image_path"])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BadImageError, match=r"t\.jpg.*truncated"):
        preprocess_image(row, 64, MaskRules())


def test_decoded_size_must_match_the_manifest(tmp_path):
    row = write_case(tmp_path, "s") | {"width": 401}
    with pytest.raises(BadImageError, match=r"s\.png.*400x300.*401x300"):
        preprocess_image(row, 64, MaskRules())


def test_black_image_has_no_field_of_view(tmp_path):
    row = write_case(tmp_path, "k")
    cv2.imwrite(row["image_path"], np.zeros((300, 400, 3), np.uint8))
    with pytest.raises(BadImageError, match=r"k\.png.*no field of view"):
        preprocess_image(row, 64, MaskRules())


def test_build_cache_publishes_a_readable_cache(tmp_path):
    manifest = manifest_of(tmp_path, 3)
    out = tmp_path / "cache"
    report = build_cache(manifest, out, 64, MaskRules(threshold=1), threads=1, progress=False)
    assert (report.written, report.resumed, report.skipped) == (3, 0, [])
    cache = Cache(out)
    assert cache.ids == ["img0", "img1", "img2"]
    settings = json.loads((out / "cache.json").read_text())
    assert settings["size"] == 64 and settings["dataset"] == "TEST"
    assert settings["rules"]["threshold"] == 1
    assert pd.read_csv(out / "skipped.csv").empty
    assert cache.lesion_pixels("img1")[Lesion.MA].size > 0
    assert not out.with_name("cache.partial").exists()


def test_processes_give_the_same_cache_as_one(tmp_path):
    manifest = manifest_of(tmp_path, 3)
    build_cache(manifest, tmp_path / "one", 64, MaskRules(), threads=1, progress=False)
    build_cache(manifest, tmp_path / "two", 64, MaskRules(), threads=2, progress=False)
    one, two = Cache(tmp_path / "one"), Cache(tmp_path / "two")
    for image_id in one.ids:
        assert np.array_equal(one.image(image_id), two.image(image_id))
        assert np.array_equal(one.labels(image_id), two.labels(image_id))


@pytest.mark.parametrize("threads", [1, 2])
def test_fail_mode_leaves_nothing_at_out(tmp_path, threads):
    manifest = manifest_of(tmp_path, 3)
    broken = Path(manifest.loc[1, "image_path"])
    broken.write_bytes(b"not an image")
    out = tmp_path / "cache"
    with pytest.raises(BadImageError, match=r"img1\.png.*cannot be decoded"):
        build_cache(manifest, out, 64, MaskRules(), threads=threads, progress=False)
    assert not out.exists()


def test_skip_mode_lists_every_bad_file(tmp_path):
    manifest = manifest_of(tmp_path, 4)
    Path(manifest.loc[1, "image_path"]).write_bytes(b"not an image")
    cv2.imwrite(manifest.loc[2, "mask_MA"], blank(10, 10))
    manifest = pd.concat([manifest, manifest.iloc[[3]]], ignore_index=True)  # a duplicated id
    out = tmp_path / "cache"
    with pytest.warns(UserWarning, match="3 image"):
        report = build_cache(
            manifest, out, 64, MaskRules(), threads=1, on_bad_image="skip", progress=False
        )
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped.columns) == ["image_id", "path", "reason"]
    reasons = dict(zip(skipped["image_id"], skipped["reason"], strict=True))
    assert set(reasons) == {"img1", "img2", "img3"} and len(report.skipped) == 3
    assert "cannot be decoded" in reasons["img1"] and "10x10" in reasons["img2"]
    assert "duplicated" in reasons["img3"]
    assert skipped.set_index("image_id").loc["img2", "path"] == manifest.loc[2, "mask_MA"]
    assert Cache(out).ids == ["img0", "img3"]


def test_duplicated_ids_fail(tmp_path):
    manifest = manifest_of(tmp_path, 2)
    manifest.loc[1, "image_id"] = "img0"
    with pytest.raises(BadImageError, match="duplicated image_id 'img0'"):
        build_cache(manifest, tmp_path / "cache", 64, MaskRules(), threads=1, progress=False)


def test_resume_does_not_redo_written_images(tmp_path):
    manifest = manifest_of(tmp_path, 4)
    out = tmp_path / "cache"
    rules = MaskRules()
    writer = CacheWriter(out, cache_settings(manifest, 64, rules))  # an interrupted build...
    for row in manifest.iloc[:2].to_dict("records"):
        entry = preprocess_image(row, 64, rules)
        marked = np.full_like(entry.image, 7)  # ...whose images we can recognise
        writer.write(type(entry)(entry.image_id, entry.split, marked, entry.labels, entry.geometry))
    report = build_cache(manifest, out, 64, rules, threads=1, progress=False)
    assert (report.resumed, report.written) == (2, 2)
    cache = Cache(out)
    assert (np.asarray(cache.image("img0")) == 7).all() and (
        np.asarray(cache.image("img1")) == 7
    ).all()
    assert not (np.asarray(cache.image("img2")) == 7).all()
    assert cache.ids == ["img0", "img1", "img2", "img3"]


def test_changed_settings_discard_leftovers(tmp_path):
    manifest = manifest_of(tmp_path, 2)
    out = tmp_path / "cache"
    writer = CacheWriter(out, cache_settings(manifest, 64, MaskRules(threshold=1)))
    row = manifest.iloc[0].to_dict()
    writer.write(preprocess_image(row, 64, MaskRules(threshold=1)))
    report = build_cache(manifest, out, 64, MaskRules(threshold=128), threads=1, progress=False)
    assert (report.resumed, report.written) == (0, 2)


def test_changed_manifest_discards_leftovers(tmp_path):
    """A partial build made from another manifest (e.g. another mask file) is not resumed."""
    manifest = manifest_of(tmp_path, 2)
    out = tmp_path / "cache"
    rules = MaskRules()
    writer = CacheWriter(out, cache_settings(manifest, 64, rules))
    writer.write(preprocess_image(manifest.iloc[0].to_dict(), 64, rules))
    changed = manifest.copy()
    changed.loc[0, "mask_MA"] = ""  # the image's microaneurysm file was dropped
    report = build_cache(changed, out, 64, rules, threads=1, progress=False)
    assert (report.resumed, report.written) == (0, 2)
    assert Cache(out).settings == cache_settings(changed, 64, rules)
    assert Cache(out).settings != cache_settings(manifest, 64, rules)


def test_all_six_classes_and_ignore_land_on_their_own_bits(tmp_path):
    names = ("EX", "HE", "MA", "CWS", "IRMA", "NV")
    masks = {}
    for index, name in enumerate(names):
        mask = blank()
        mask[100:120, 110 + 30 * index : 125 + 30 * index] = 255
        mask[200:210, 110 + 30 * index : 120 + 30 * index] = 127
        masks[name] = mask
    row = write_case(tmp_path, "six", masks=masks)
    entry = preprocess_image(row, 400, MaskRules(uncertain_value=127))
    for index, name in enumerate(names):
        cy, cx = (int(v) for v in entry.geometry.to_cache(110, 117 + 30 * index))
        assert entry.labels[cy, cx] == FOV_BIT | Lesion[name].bit
        uy, ux = (int(v) for v in entry.geometry.to_cache(205, 115 + 30 * index))
        assert entry.labels[uy, ux] == FOV_BIT | IGNORE_BIT


def test_channel_views_give_the_coverage_rule_of_contiguous_planes():
    rng = np.random.default_rng(3)
    planes = [(rng.random((400, 500)) < p).astype(np.uint8) * 255 for p in (0.01, 0.2, 0.5, 0.9)]
    coverages, full = area_coverage(planes, 97, 61)
    for plane, coverage in zip(planes, coverages, strict=True):
        assert not coverage.flags.c_contiguous
        expected = downscale_keeping_lesions(plane, 97, 61)
        assert np.array_equal(lesions_from_coverage(coverage, full), expected)


def test_roi_space_masks_are_placed_in_the_photograph_frame(tmp_path):
    roi_mask = blank(100, 100)
    roi_mask[40:60, 40:60] = 255
    row = write_case(tmp_path, "roi", masks={"EX": roi_mask}) | {"mask_roi": "150 100 250 200"}
    entry = preprocess_image(row, 256, MaskRules())
    cy, cx = entry.geometry.to_cache(150.0, 200.0)  # the ROI's centre in the photograph
    assert entry.labels[int(cy), int(cx)] & Lesion.EX.bit
    assert not (entry.labels & Lesion.EX.bit)[: int(cy) - 20].any()


def test_nearest_roi_masks_are_placed_and_cached_by_nearest_neighbour(tmp_path):
    """Under ``nearest`` every cache pixel of a MAPLES-DR ROI-space map is a copy of one
    map pixel: cv2.INTER_NEAREST into the box, then on the crop."""
    rng = np.random.default_rng(2)
    roi_mask = np.where(rng.random((150, 150)) < 0.02, np.uint8(255), np.uint8(0))
    row = write_case(tmp_path, "roi", masks={"MA": roi_mask}) | {"mask_roi": "140 90 260 210"}
    entry = preprocess_image(row, 64, MaskRules(resize="nearest"))
    in_box = cv2.resize(roi_mask, (120, 120), interpolation=cv2.INTER_NEAREST)
    placed = blank()
    placed[90:210, 140:260] = in_box
    g = entry.geometry
    crop = placed[g.crop_y0 : g.crop_y1, g.crop_x0 : g.crop_x1]
    resized = cv2.resize(crop, (g.resized_w, g.resized_h), interpolation=cv2.INTER_NEAREST)
    inner = entry.labels[g.pad_top : g.pad_top + g.resized_h, g.pad_left : g.pad_left + g.resized_w]
    assert resized.any()
    np.testing.assert_array_equal((inner & Lesion.MA.bit) > 0, resized > 0)


def test_roi_mask_that_cannot_be_placed_names_the_file(tmp_path):
    mask = tmp_path / "roi_mask.png"
    cv2.imwrite(str(mask), np.full((10, 10), 255, np.uint8))
    with pytest.raises(BadImageError, match="roi_mask.png"):
        read_mask_in_frame(str(mask), "0 0 10", (20, 20))  # a box needs four numbers


def test_a_lesion_rule_overrides_the_threshold_for_that_lesion_only():
    values = np.array([[0, 1, 2, 127, 200]], np.uint8)
    rules = MaskRules(
        threshold=128,
        uncertain_value=127,
        lesion_rules={"HE": {"values": [2]}, "MA": {"threshold": 1}},
    )
    assert rules.binarise(values, Lesion.EX)[0].tolist() == [[0, 0, 0, 0, 255]]
    assert rules.binarise(values, Lesion.HE)[0].tolist() == [[0, 0, 255, 0, 0]]
    lesion, ignore = rules.binarise(values, Lesion.MA)
    assert lesion.tolist() == [[0, 255, 255, 0, 255]] and ignore.tolist() == [[0, 0, 0, 255, 0]]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"XX": {"threshold": 1}}, "unknown lesion 'XX'"),
        ({"EX": {"threshold": 1, "values": [1]}}, "one of 'threshold' or 'values'"),
        ({"EX": {"threshold": 0}}, "threshold in 1..255"),
        ({"EX": {"values": [256]}}, "8-bit values"),
        ({"EX": {"values": []}}, "8-bit values"),
    ],
)
def test_a_bad_lesion_rule_is_refused_naming_the_lesion(rules, message):
    with pytest.raises(ValueError, match=message):
        MaskRules(lesion_rules=rules)


# ----------------------------------------------------------------------------- mask_resize


def speckled_case(folder: Path, image_id: str, height: int, width: int, seed: int) -> dict:
    """A disc photograph with a noisy 8-bit MA mask (values 0..255: the threshold matters),
    blobs of exudate and a RETLES-style uncertain (127) haemorrhage region."""
    rng = np.random.default_rng(seed)
    specks = np.where(rng.random((height, width)) < 0.01, rng.integers(1, 256, (height, width)), 0)
    exudates = blank(height, width)
    for _ in range(6):
        centre = (int(rng.integers(width // 4, 3 * width // 4)), int(rng.integers(0, height)))
        cv2.circle(exudates, centre, int(rng.integers(1, 8)), 255, -1)
    haemorrhage = blank(height, width)
    haemorrhage[height // 3 : height // 2, width // 3 : width // 2] = 200
    haemorrhage[height // 2 : height // 2 + 9, width // 2 : width // 2 + 7] = 127
    masks = {"MA": specks.astype(np.uint8), "EX": exudates, "HE": haemorrhage}
    return write_case(folder, image_id, height, width, masks=masks)


def nearest_reference(row: dict, entry, lesion: str, keep) -> np.ndarray:
    """``keep(values)`` of the cv2.INTER_NEAREST resize of the mask's crop, in the cache square:
    the authors' order (crop, resize, then threshold)."""
    g = entry.geometry
    values = cv2.imread(row[f"mask_{lesion}"], cv2.IMREAD_UNCHANGED)[
        g.crop_y0 : g.crop_y1, g.crop_x0 : g.crop_x1
    ]
    resized = cv2.resize(values, (g.resized_w, g.resized_h), interpolation=cv2.INTER_NEAREST)
    square = np.zeros((g.size, g.size), bool)
    square[g.pad_top : g.pad_top + g.resized_h, g.pad_left : g.pad_left + g.resized_w] = keep(
        resized
    )
    return square


@pytest.mark.parametrize(
    ("height", "width", "size"),
    [(300, 400, 128), (600, 800, 211), (380, 380, 96), (120, 160, 256), (97, 131, 97)],
)
def test_nearest_is_cv2_inter_nearest_on_the_crop_bit_for_bit(tmp_path, height, width, size):
    """Masks are thresholded before resizing; cv2 resizes the raw values and thresholds after:
    for nearest the order makes no difference."""
    row = speckled_case(tmp_path, "n", height, width, seed=size)
    rules = MaskRules(threshold=128, uncertain_value=127, resize="nearest")
    entry = preprocess_image(row, size, rules)
    expected = {
        Lesion.MA.bit: nearest_reference(row, entry, "MA", lambda v: v >= 128),
        Lesion.EX.bit: nearest_reference(row, entry, "EX", lambda v: v >= 128),
        Lesion.HE.bit: nearest_reference(row, entry, "HE", lambda v: v >= 128),
        IGNORE_BIT: nearest_reference(row, entry, "HE", lambda v: v == 127)
        | nearest_reference(row, entry, "MA", lambda v: v == 127),
    }
    for bit, reference in expected.items():
        assert np.array_equal((entry.labels & bit) > 0, reference), bit
    assert expected[Lesion.MA.bit].any() and expected[IGNORE_BIT].any()


def test_a_one_pixel_lesion_vanishes_under_nearest_and_survives_under_preserve(tmp_path):
    row = write_case(tmp_path, "p", 600, 800)
    g = preprocess_image(row, 100, MaskRules()).geometry
    step_y = (g.crop_y1 - g.crop_y0) / g.resized_h  # about 5.4 native pixels a cache pixel
    step_x = (g.crop_x1 - g.crop_x0) / g.resized_w
    y = g.crop_y0 + int(50 * step_y) + 1  # between two rows (and columns) nearest samples
    x = g.crop_x0 + int(50 * step_x) + 1
    mask = blank(600, 800)
    mask[y, x] = 255
    row = write_case(tmp_path, "p", 600, 800, masks={"MA": mask})
    nearest = preprocess_image(row, 100, MaskRules(resize="nearest"))
    preserve = preprocess_image(row, 100, MaskRules(resize="preserve"))
    assert not nearest_reference(row, nearest, "MA", lambda v: v > 0).any()  # cv2 loses it too
    assert not (nearest.labels & Lesion.MA.bit).any()
    found = np.argwhere(preserve.labels & Lesion.MA.bit)
    cy, cx = preserve.geometry.to_cache(y + 0.5, x + 0.5)
    assert 1 <= len(found) <= 4 and np.abs(found + 0.5 - [float(cy), float(cx)]).max() <= 1.5


#: SHA-256 of the label planes of ``golden_rows`` at size 96, made by commit b237850 (before
#: the mask_resize setting existed): the default, ``preserve``, must keep giving them.
PRESERVE_GOLDEN = "d6b0d456a33857aaca7d5e8ab3f724db00e5114e88fe99810221190289f29af2"


def golden_rows(folder: Path) -> list[dict]:
    """A speckled photograph and an ROI-space mask placed by downscaling (150 -> 120 px)."""
    rng = np.random.default_rng(11)
    roi = np.where(rng.random((150, 150)) < 0.01, np.uint8(255), np.uint8(0))
    placed = write_case(folder, "roi", masks={"MA": roi}) | {"mask_roi": "130 70 250 190"}
    return [speckled_case(folder, "speckled", 300, 400, seed=5), placed]


@pytest.mark.parametrize("resize", [None, "preserve"])
def test_preserve_is_the_default_and_gives_the_labels_it_gave_before(tmp_path, resize):
    chosen = {} if resize is None else {"resize": resize}
    rules = MaskRules(threshold=1, uncertain_value=127, **chosen)
    labels = [preprocess_image(row, 96, rules).labels for row in golden_rows(tmp_path)]
    assert (
        hashlib.sha256(b"".join(plane.tobytes() for plane in labels)).hexdigest() == PRESERVE_GOLDEN
    )


def test_the_resize_rule_is_part_of_the_cache_fingerprint(tmp_path):
    manifest = manifest_of(tmp_path, 2)
    preserve, nearest = MaskRules(), MaskRules(resize="nearest")
    settings = cache_settings(manifest, 64, preserve)
    assert settings["rules"]["resize"] == "preserve"
    assert digest(cache_settings(manifest, 64, nearest)) != digest(settings)
    out = tmp_path / "cache"
    writer = CacheWriter(out, settings)  # a build interrupted under preserve...
    writer.write(preprocess_image(manifest.iloc[0].to_dict(), 64, preserve))
    report = build_cache(manifest, out, 64, nearest, threads=1, progress=False)
    assert (report.resumed, report.written) == (0, 2)  # ...is not resumed under nearest
    assert Cache(out).settings == cache_settings(manifest, 64, nearest)


def test_an_unknown_resize_rule_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="preserve.*nearest.*'bilinear'"):
        MaskRules(resize="bilinear")
