"""predict: photographs of any size in, native-size lesion maps, overlays and tables out."""

from __future__ import annotations

import json
import logging
import typing
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import quiet_options
from safetensors.torch import save_file
from support.permissions import EXPECTED, wrong_modes
from support.predict import TINY, read_png, rendered, save_random_model, write_photograph

from lesionsoup.cli import main
from lesionsoup.commands.predict import FLIP_CHOICES, MAX_PIXELS, MODE_CHOICES
from lesionsoup.core.checkpoint import CheckpointError, save_checkpoint
from lesionsoup.core.lesions import TRAINED, Lesion, pack
from lesionsoup.core.model import build_model
from lesionsoup.core.specs import TrainSettings
from lesionsoup.data.cache import Cache, CacheEntry, CacheWriter
from lesionsoup.data.preprocess import BadImageError, downscale_keeping_lesions, prepare_photograph
from lesionsoup.deploy import predict as predict_module
from lesionsoup.deploy.predict import (
    OVERLAY_COLOURS,
    PredictOptions,
    decode_reduction,
    draw_overlay,
    find_photographs,
    lesion_statistics,
    predict_photographs,
)
from lesionsoup.inference.infer import FLIPS, InferenceSettings
from lesionsoup.training.run import train_run

#: The trained fixture: photographs, cache size and a short, fast training recipe.
PHOTO_SHAPE = (560, 640)
CACHE_SIZE = 448  # about the photographs' own scale: exudates stay visible
RECIPE = TrainSettings(
    steps=250,
    batch_size=8,
    patch_size=64,
    lr=1e-2,
    warmup_steps=10,
    lesion_fraction=0.9,
    augmentation="light",
    validate_every=250,
    state_every=250,
    bins=200,
)
QUIET = PredictOptions(progress=False)
LESIONS = ("EX", "HE", "MA", "CWS")


# ----------------------------------------------------------------------------- a trained model


def _cache_entry(seed: int, split: str) -> CacheEntry:
    fundus = rendered(seed, *PHOTO_SHAPE)
    prepared = prepare_photograph(
        cv2.cvtColor(fundus.image, cv2.COLOR_RGB2BGR), CACHE_SIZE, f"img{seed}"
    )
    g = prepared.geometry
    y0, x0, y1, x1 = prepared.crop
    masks = {
        lesion: downscale_keeping_lesions(
            mask[y0:y1, x0:x1].view(np.uint8) * np.uint8(255), g.resized_w, g.resized_h
        )
        for lesion, mask in fundus.lesions.items()
    }
    inner = np.s_[g.pad_top : g.pad_top + g.resized_h, g.pad_left : g.pad_left + g.resized_w]
    labels = np.zeros((CACHE_SIZE, CACHE_SIZE), np.uint8)
    labels[inner] = pack(masks, prepared.cache_fov()[inner])
    return CacheEntry(f"img{seed}", split, prepared.image, labels, g)


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory) -> Path:
    """A tiny U-Net trained briefly on rendered fundus photographs cached at CACHE_SIZE."""
    root = tmp_path_factory.mktemp("trained")
    writer = CacheWriter(root / "SYN", {"size": CACHE_SIZE, "dataset": "SYN"})
    entries = [_cache_entry(seed, "train" if seed < 6 else "valid") for seed in range(8)]
    for entry in entries:
        writer.write(entry)
    writer.publish(entry.image_id for entry in entries)
    train_run(
        root / "run",
        {"SYN": Cache(root / "SYN")},
        TINY,
        RECIPE,
        quiet_options(threads=1, extra_metadata={"cache_size": CACHE_SIZE}),
    )
    return root / "run" / "last.safetensors"


def test_trained_model_finds_lesions_with_and_without_black_margins(trained_model, tmp_path):
    fundus = rendered(100, *PHOTO_SHAPE)
    top, bottom, left, right = 37, 53, 91, 12  # wide, uneven margins: odd photograph sides
    framed = np.pad(fundus.image, ((top, bottom), (left, right), (0, 0)))
    write_photograph(tmp_path / "in" / "plain.png", fundus.image)
    write_photograph(tmp_path / "in" / "framed.png", framed)
    options = PredictOptions(threshold=0.4, progress=False)
    report = predict_photographs(trained_model, [tmp_path / "in"], tmp_path / "out", options)
    assert report.predicted == 2
    recorded = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert recorded["size"] == CACHE_SIZE  # read from the checkpoint's metadata

    inside = np.s_[top : top + PHOTO_SHAPE[0], left : left + PHOTO_SHAPE[1]]
    for lesion in (Lesion.EX, Lesion.HE):
        truth = fundus.lesions[lesion]
        plain = read_png(tmp_path / "out" / "plain" / f"{lesion.value}_mask.png") > 0
        framed_mask = read_png(tmp_path / "out" / "framed" / f"{lesion.value}_mask.png") > 0
        assert framed_mask.shape == framed.shape[:2]
        assert not framed_mask[:top].any() and not framed_mask[:, :left].any()
        for found in (plain, framed_mask[inside]):
            recall = (found & truth).sum() / truth.sum()
            assert recall >= 0.5, (lesion, recall)
            assert found.sum() <= 4 * truth.sum(), lesion  # not everything is lesion
        iou = (plain & framed_mask[inside]).sum() / (plain | framed_mask[inside]).sum()
        assert iou >= 0.8, (lesion, iou)


# ----------------------------------------------------------------------------- plumbing


@pytest.fixture(scope="module")
def random_model(tmp_path_factory) -> Path:
    return save_random_model(tmp_path_factory.mktemp("random") / "model.safetensors")


def test_every_output_has_the_photographs_own_shape(random_model, tmp_path):
    shapes = {"odd": (301, 417), "tall": (257, 211)}
    for seed, (name, shape) in enumerate(shapes.items()):
        write_photograph(tmp_path / "in" / f"{name}.jpg", rendered(seed, *shape).image)
    options = PredictOptions(size=96, threshold=0.5, progress=False)
    predict_photographs(random_model, [tmp_path / "in"], tmp_path / "out", options)
    table = pd.read_csv(tmp_path / "out" / "lesions.csv").set_index("image_id")
    assert sorted(table.index) == sorted(shapes)
    for name, shape in shapes.items():
        folder = tmp_path / "out" / name
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [
                f"{x}_{kind}.png"
                for x in ("EX", "HE", "MA", "CWS")
                for kind in ("mask", "probability")
            ]
            + ["lesions.json", "overlay.png"]
        )
        for lesion in LESIONS:
            probability = read_png(folder / f"{lesion}_probability.png")
            mask = read_png(folder / f"{lesion}_mask.png")
            assert probability.shape == mask.shape == shape
            assert probability.dtype == mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 255}
            # the mask is the probability thresholded (before 8-bit rounding)
            assert ((probability >= 128) == (mask > 0)).mean() > 0.999
            assert table.loc[name, f"{lesion}_pixels"] == np.count_nonzero(mask)
        assert read_png(folder / "overlay.png").shape == (*shape, 3)
        assert (table.loc[name, ["height", "width"]].tolist()) == list(shape)
    assert not list((tmp_path / "out").glob(".*partial"))


def test_batches_sliding_windows_and_flips_run_and_batches_change_nothing(random_model, tmp_path):
    for seed in range(3):
        write_photograph(tmp_path / "in" / f"p{seed}.png", rendered(seed, 150 + seed, 170).image)
    outputs = {}
    for batch_size in (1, 2):
        options = PredictOptions(size=64, batch_size=batch_size, progress=False, overlay=False)
        out = tmp_path / f"b{batch_size}"
        predict_photographs(random_model, [tmp_path / "in"], out, options)
        outputs[batch_size] = [read_png(out / f"p{i}" / "HE_probability.png") for i in range(3)]
    for one, two in zip(outputs[1], outputs[2], strict=True):
        assert np.abs(one.astype(int) - two.astype(int)).max() <= 1
    options = PredictOptions(size=64, mode="sliding", tile=32, tta=("horizontal",), progress=False)
    predict_photographs(random_model, [tmp_path / "in"], tmp_path / "slide", options)
    sliding = read_png(tmp_path / "slide" / "p0" / "HE_probability.png")
    assert sliding.shape == outputs[1][0].shape
    assert not np.array_equal(sliding, outputs[1][0])


def test_probabilities_are_zero_outside_the_field_of_view(random_model, tmp_path):
    fundus = rendered(3, 200, 260)
    write_photograph(tmp_path / "p.png", fundus.image)
    options = PredictOptions(size=64, progress=False)
    predict_photographs(random_model, [tmp_path / "p.png"], tmp_path / "out", options)
    probability = read_png(tmp_path / "out" / "p" / "MA_probability.png")
    assert probability[~fundus.fov].max() == 0
    assert probability[fundus.fov].max() > 0


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    folder = tmp_path / "in"
    write_photograph(folder / "good.png", rendered(5, 120, 150).image)
    write_photograph(folder / "black.png", np.zeros((90, 100, 3), np.uint8))
    good_jpeg = cv2.imencode(".jpg", rendered(6, 120, 150).image)[1].tobytes()
    (folder / "cut.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    (folder / "text.tif").write_text("not an image")
    return folder


def test_bad_photographs_stop_the_run_naming_the_file(random_model, mixed_folder, tmp_path):
    options = PredictOptions(size=64, progress=False)
    with pytest.raises(BadImageError, match="black.png: no field of view"):
        predict_photographs(random_model, [mixed_folder], tmp_path / "out", options)
    assert not (tmp_path / "out" / "lesions.csv").exists()


def test_keep_going_predicts_the_rest_and_lists_failures(random_model, mixed_folder, tmp_path):
    options = PredictOptions(size=64, keep_going=True, progress=False)
    report = predict_photographs(random_model, [mixed_folder], tmp_path / "out", options)
    assert report.predicted == 1
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    reasons = {Path(path).name: reason for path, reason in failures.to_numpy()}
    assert set(reasons) == {"black.png", "cut.jpg", "text.tif"}
    assert "no field of view" in reasons["black.png"]
    assert "truncated JPEG" in reasons["cut.jpg"]
    assert "cannot be decoded" in reasons["text.tif"]
    assert pd.read_csv(tmp_path / "out" / "lesions.csv")["image_id"].tolist() == ["good"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "failures.csv",
        "good",
        "lesions.csv",
        "predict.json",
    ]


def test_cli_exit_codes_and_messages(random_model, mixed_folder, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    out = tmp_path / "out"
    argv = ["predict", str(random_model), str(mixed_folder), "-o", str(out), "--no-progress"]
    assert main([*argv, "--size", "64"]) == 1
    assert "black.png" in caplog.text
    assert main([*argv, "--size", "64", "--keep-going", "--threshold", "MA=0.2"]) == 0
    assert len(pd.read_csv(out / "failures.csv")) == 3
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (mixed_folder / "black.png").rename(only_bad / "black.png")
    bad_argv = ["predict", str(random_model), str(only_bad), "-o", str(out), "--keep-going"]
    assert main([*bad_argv, "--size", "64"]) == 1
    assert "every photograph failed" in caplog.text


@pytest.mark.parametrize(
    ("option", "mode"),
    [
        ([], "group"),
        (["--permissions", "private"], "private"),
        (["--permissions", "umask"], "umask"),
    ],
)
def test_predictions_are_kept_from_others_unless_asked(
    random_model, mixed_folder, tmp_path, option, mode
):
    """Under the usual umask 022, `predict` writes for its owner and group alone by default."""
    out = tmp_path / "out"
    argv = ["predict", str(random_model), str(mixed_folder), "-o", str(out), "--keep-going"]
    assert main([*argv, "--size", "64", "--no-progress", *option]) == 0
    assert (out / "good" / "overlay.png").exists() and (out / "failures.csv").exists()
    assert wrong_modes(out, *EXPECTED[mode]) == {}


def test_a_model_without_a_recorded_resolution_is_refused_not_guessed(
    random_model, mixed_folder, tmp_path, caplog
):
    caplog.set_level(logging.ERROR)
    out = tmp_path / "out"
    assert main(["predict", str(random_model), str(mixed_folder), "-o", str(out)]) == 1
    assert f"{random_model}: records no 'cache_size'" in caplog.text
    assert not out.exists()


def test_models_that_are_not_ours_are_refused_by_name(tmp_path, mixed_folder):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, foreign)
    pickle = tmp_path / "model.pt"
    pickle.write_bytes(b"\x80\x04not ours")
    for model, problem in ((foreign, "not a lesionsoup checkpoint"), (pickle, "not a model")):
        with pytest.raises(CheckpointError, match=f"{model.name}.*{problem}"):
            predict_photographs(model, [mixed_folder], tmp_path / "out", QUIET)
    with pytest.raises(CheckpointError, match="not an exported lesionsoup model folder"):
        predict_photographs(tmp_path, [mixed_folder], tmp_path / "out", QUIET)


# ----------------------------------------------------------------------------- pieces


def test_photographs_are_found_recursively_with_unique_ids(tmp_path):
    image = rendered(0, 64, 64).image
    for name in ("a.JPG", "sub/b.png", "sub/deeper/c.tiff", "out/old/overlay.png"):
        write_photograph(tmp_path / "in" / name, image)
    (tmp_path / "in" / "notes.txt").write_text("x")
    single = write_photograph(tmp_path / "single.png", image)
    found = find_photographs([tmp_path / "in", single], exclude=tmp_path / "in" / "out")
    assert [(p.image_id, p.path.name) for p in found] == [
        ("a", "a.JPG"),
        ("sub/b", "b.png"),
        ("sub/deeper/c", "c.tiff"),
        ("single", "single.png"),
    ]
    write_photograph(tmp_path / "in" / "a.png", image)
    with pytest.raises(ValueError, match="a.png and .*a.JPG|a.JPG and .*a.png"):
        find_photographs([tmp_path / "in"], exclude=tmp_path / "in" / "out")
    with pytest.raises(FileNotFoundError, match="missing"):
        find_photographs([tmp_path / "missing"])
    with pytest.raises(FileNotFoundError, match="empty: no"):
        (tmp_path / "empty").mkdir()
        find_photographs([tmp_path / "empty"])


def test_options_resolve_thresholds_and_check_them():
    options = PredictOptions(threshold=0.4, lesion_thresholds={"MA": 0.2})
    assert options.threshold_of(Lesion.MA) == 0.2
    assert options.threshold_of(Lesion.EX) == 0.4
    with pytest.raises(ValueError, match="MA=1.5"):
        PredictOptions(lesion_thresholds={"MA": 1.5})
    with pytest.raises(ValueError, match="size"):
        PredictOptions(size=8)


def test_lesion_statistics_count_pixels_share_and_components():
    mask = np.zeros((10, 10), bool)
    mask[1:3, 1:3] = True  # 4 pixels
    mask[6, 6] = mask[7, 7] = True  # diagonal neighbours: one 8-connected component
    stats = lesion_statistics({Lesion.EX: mask, Lesion.HE: np.zeros_like(mask)}, fov_pixels=50)
    assert stats == {
        "EX_pixels": 6,
        "EX_fov_percent": 12.0,
        "EX_count": 2,
        "HE_pixels": 0,
        "HE_fov_percent": 0.0,
        "HE_count": 0,
    }


def test_overlay_colours_lesions_distinctly_and_draws_a_legend():
    def closest(lesions: list[Lesion]) -> float:
        colours = np.array([OVERLAY_COLOURS[lesion] for lesion in lesions], float)
        distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
        return distances[~np.eye(len(colours), dtype=bool)].min()

    assert closest(list(TRAINED)) > 150
    assert closest(list(OVERLAY_COLOURS)) > 100
    rgb = np.full((400, 500, 3), 60, np.uint8)
    masks = {lesion: np.zeros((400, 500), bool) for lesion in (Lesion.EX, Lesion.HE)}
    masks[Lesion.EX][200:260, 300:360] = True
    masks[Lesion.HE][300:340, 100:180] = True
    overlay = draw_overlay(rgb, masks)
    assert overlay.shape == rgb.shape and overlay.dtype == np.uint8
    assert tuple(overlay[200, 330]) == OVERLAY_COLOURS[Lesion.EX]  # outline
    assert tuple(overlay[300, 140]) == OVERLAY_COLOURS[Lesion.HE]
    assert not np.array_equal(overlay[230, 330], rgb[230, 330])  # translucent fill
    assert np.array_equal(overlay[380, 20], rgb[380, 20])  # untouched elsewhere
    legend = overlay[:40, :120]
    assert any((legend == colour).all(axis=-1).any() for colour in OVERLAY_COLOURS.values())
    assert (legend == 255).all(axis=-1).any()  # white text


def test_cli_choices_mirror_inference():
    assert tuple(FLIPS) == FLIP_CHOICES
    assert typing.get_args(typing.get_type_hints(InferenceSettings)["mode"]) == MODE_CHOICES
    assert predict_module.MAX_PIXELS == MAX_PIXELS


# ----------------------------------------------------------------------------- memory


#: The child: 4 GiB of address space beyond what importing torch and cv2 maps (about 4 GB
#: of virtual memory, mostly reserved, never touched), as on a small laptop.
LIMITED_PREDICT = """
import resource, sys
import lesionsoup.deploy.predict
from lesionsoup.cli import main
mapped = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (mapped + 4 * 2**30, resource.RLIM_INFINITY))
sys.exit(main(["predict", *sys.argv[1:]]))
"""


def test_a_huge_photograph_is_decoded_reduced_within_4_gb_and_the_rest_predicted(
    random_model, tmp_path
):
    import subprocess
    import sys

    folder = tmp_path / "in"
    write_photograph(folder / "normal.png", rendered(5, 120, 150).image)
    huge = np.full((20000, 20000), 150, np.uint8)  # uniform: a few MB as a JPEG
    assert cv2.imwrite(str(folder / "huge.jpg"), huge)
    del huge
    out = tmp_path / "out"
    argv = [str(random_model), str(folder), "-o", str(out), "--size", "64", "--keep-going"]
    result = subprocess.run(
        [sys.executable, "-c", LIMITED_PREDICT, *argv, "--no-progress", "--no-overlay"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(out / "lesions.csv").set_index("image_id")
    assert table.loc["normal", ["height", "width", "reduction"]].tolist() == [120, 150, 1]
    assert table.loc["huge", ["height", "width", "reduction"]].tolist() == [5000, 5000, 4]
    assert read_png(out / "huge" / "EX_mask.png").shape == (5000, 5000)
    assert pd.read_csv(out / "failures.csv").empty


def test_max_pixels_picks_the_least_jpeg_reduction_and_refuses_other_formats(tmp_path):
    jpeg = write_photograph(tmp_path / "a.jpg", rendered(1, 80, 100).image)
    png = write_photograph(tmp_path / "a.png", rendered(1, 80, 100).image)
    assert decode_reduction(jpeg, 8000) == 1
    assert decode_reduction(jpeg, 7999) == 2  # 50 x 40 = 2000
    assert decode_reduction(jpeg, 2000) == 2
    assert decode_reduction(jpeg, 1999) == 4  # 25 x 20
    assert decode_reduction(jpeg, 130) == 8  # 13 x 10
    with pytest.raises(BadImageError, match="100x80 is 0 megapixels, above --max-pixels 129"):
        decode_reduction(jpeg, 129)
    assert decode_reduction(png, 8000) == 1
    with pytest.raises(BadImageError, match=r"a\.png: 100x80 .*only JPEGs are decoded reduced"):
        decode_reduction(png, 7999)


def test_running_out_of_memory_on_one_photograph_is_contained(
    random_model, mixed_folder, tmp_path, monkeypatch
):
    prepare = predict_module.prepare_photograph

    def short_of_memory(native, size, path):
        if Path(path).name == "good.png":
            raise MemoryError("Unable to allocate 6.5 GiB")
        return prepare(native, size, path)

    monkeypatch.setattr(predict_module, "prepare_photograph", short_of_memory)
    write_photograph(mixed_folder / "other.png", rendered(7, 120, 150).image)
    out = tmp_path / "out"
    report = predict_photographs(
        random_model, [mixed_folder], out, PredictOptions(size=64, keep_going=True, progress=False)
    )
    assert report.predicted == 1  # other.png
    reasons = dict(pd.read_csv(out / "failures.csv").to_numpy())
    assert reasons[str(mixed_folder / "good.png")].startswith("out of memory")
    stopped = tmp_path / "stopped"
    with pytest.raises(BadImageError, match="good.png: out of memory"):
        predict_photographs(
            random_model,
            [mixed_folder / "good.png"],
            stopped,
            PredictOptions(size=64, progress=False),
        )
    assert pd.read_csv(stopped / "failures.csv")["path"].tolist() == [
        str(mixed_folder / "good.png")
    ]
    assert not (stopped / "lesions.csv").exists()


# ----------------------------------------------------------------------------- nnU-Net-like use


def folder_state(out: Path) -> dict[str, tuple[int, int]]:
    """Each file under ``out`` (but the tables) by its inode and modification time."""
    return {
        str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in out.rglob("*")
        if p.is_file() and p.parent != out
    }


@pytest.fixture
def three_photographs(tmp_path) -> Path:
    folder = tmp_path / "in"
    for seed, name in enumerate(("a", "b", "c")):
        write_photograph(folder / f"{name}.png", rendered(seed, 120 + 7 * seed, 150).image)
    return folder


def test_input_option_is_the_positional_input_and_both_or_neither_are_refused(
    random_model, three_photographs, tmp_path, caplog
):
    caplog.set_level(logging.ERROR)
    options = ["--size", "64", "--no-progress", "--no-overlay"]
    # INPUT arguments before or after the options
    positional = ["predict", str(random_model), "-o", str(tmp_path / "p"), str(three_photographs)]
    assert main([*positional, *options]) == 0
    short = ["predict", str(random_model), "-i", str(three_photographs), "-o", str(tmp_path / "o")]
    assert main([*short, *options]) == 0
    photo_a, photo_b = three_photographs / "a.png", three_photographs / "b.png"
    long = ["predict", str(random_model), "--input", str(photo_a), "--input", str(photo_b)]
    assert main([*long, "--output", str(tmp_path / "l"), *options]) == 0
    assert pd.read_csv(tmp_path / "l" / "lesions.csv")["image_id"].tolist() == ["a", "b"]
    for out, names in ((tmp_path / "o", "abc"), (tmp_path / "l", "ab")):
        for name in names:
            for lesion in LESIONS:
                found = read_png(out / name / f"{lesion}_probability.png")
                assert np.array_equal(
                    found, read_png(tmp_path / "p" / name / f"{lesion}_probability.png")
                )
    caplog.clear()
    assert main([*short, str(photo_a), *options]) == 1
    assert "both as INPUT arguments and with -i/--input" in caplog.text
    assert main(["predict", str(random_model), "-o", str(tmp_path / "x"), *options]) == 1
    assert "no photographs" in caplog.text
    assert not (tmp_path / "x").exists()


def test_continue_keeps_what_is_predicted_and_predicts_the_rest(
    random_model, three_photographs, tmp_path
):
    options = PredictOptions(size=64, threshold=0.45, progress=False, resume=True)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    first = predict_photographs(random_model, [three_photographs / "a.png"], out, options)
    assert (first.predicted, first.kept) == (1, 0)  # --continue on a missing folder: a plain run
    before = folder_state(out)
    report = predict_photographs(random_model, [three_photographs], out, options)
    assert (report.predicted, report.kept, report.failures) == (2, 1, [])
    after = folder_state(out)
    assert {k: v for k, v in after.items() if k.startswith("a/")} == before  # untouched
    # the tables are those of one uninterrupted run over the three photographs
    predict_photographs(random_model, [three_photographs], fresh, options)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "lesions.csv"), pd.read_csv(fresh / "lesions.csv")
    )
    assert pd.read_csv(out / "lesions.csv")["image_id"].tolist() == ["a", "b", "c"]
    recorded = json.loads((out / "predict.json").read_text())
    assert (recorded["predicted"], recorded["kept"], recorded["failed"]) == (2, 1, 0)
    again = predict_photographs(random_model, [three_photographs], out, options)
    assert (again.predicted, again.kept) == (0, 3)
    assert folder_state(out) == after
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "lesions.csv"), pd.read_csv(fresh / "lesions.csv")
    )


def test_continue_predicts_again_a_photograph_replaced_under_the_same_name(
    random_model, three_photographs, tmp_path
):
    options = PredictOptions(size=64, progress=False, resume=True)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    predict_photographs(random_model, [three_photographs], out, options)
    write_photograph(three_photographs / "b.png", rendered(7, 140, 150).image)  # another "b"
    report = predict_photographs(random_model, [three_photographs], out, options)
    assert (report.predicted, report.kept) == (1, 2)
    predict_photographs(random_model, [three_photographs], fresh, options)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "lesions.csv"), pd.read_csv(fresh / "lesions.csv")
    )
    assert (out / "b" / "EX_mask.png").read_bytes() == (fresh / "b" / "EX_mask.png").read_bytes()


def test_continue_finishes_an_interrupted_run_and_redoes_incomplete_folders(
    random_model, three_photographs, tmp_path, monkeypatch
):
    options = PredictOptions(size=64, progress=False, resume=True, save_probabilities=True)
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    publish = predict_module._publish_folder

    def killed_at_b(out_folder, image_id, files):
        if image_id == "b":
            raise KeyboardInterrupt  # as Ctrl-C in the middle of the run
        publish(out_folder, image_id, files)

    monkeypatch.setattr(predict_module, "_publish_folder", killed_at_b)
    with pytest.raises(KeyboardInterrupt):
        predict_photographs(random_model, [three_photographs], out, options)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == ["a", "predict.json"]  # no tables, no b
    (out / "c").mkdir()  # an incomplete folder (as from another tool): predicted again
    (out / "c" / "EX_mask.png").write_bytes(b"")
    report = predict_photographs(random_model, [three_photographs], out, options)
    assert (report.predicted, report.kept) == (2, 1)
    predict_photographs(random_model, [three_photographs], fresh, options)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "lesions.csv"), pd.read_csv(fresh / "lesions.csv")
    )
    for name in ("b", "c"):
        with (
            np.load(out / name / "probabilities.npz") as mine,
            np.load(fresh / name / "probabilities.npz") as theirs,
        ):
            assert all(np.array_equal(mine[x], theirs[x]) for x in LESIONS)
    (out / "b" / "probabilities.npz").unlink()  # a folder missing an output is not complete
    assert predict_photographs(random_model, [three_photographs], out, options).kept == 2


def test_continue_refuses_a_folder_of_another_model_or_other_options(
    random_model, three_photographs, tmp_path
):
    out = tmp_path / "out"
    photos = [three_photographs / "a.png"]
    base = PredictOptions(size=64, progress=False, overlay=False)
    predict_photographs(random_model, photos, out, base)
    other_model = save_random_model(tmp_path / "other.safetensors", seed=1)
    refusals = [
        (random_model, replace(base, threshold=0.3), "thresholds"),
        (
            random_model,
            replace(base, save_probabilities=True),
            "save_probabilities",
        ),
        (random_model, replace(base, overlay=True), "overlay"),
        (random_model, replace(base, size=96), "size was 64, now 96"),
        (random_model, replace(base, tta=("vertical",)), "inference"),
        (other_model, base, "model_sha256"),
    ]
    for model, options, problem in refusals:
        resumed = replace(options, resume=True)
        with pytest.raises(
            ValueError, match=f"{out} was predicted with another model or other options.*{problem}"
        ):
            predict_photographs(model, photos, out, resumed)
    # what changes no output may differ
    batched = replace(base, batch_size=2, resume=True)
    assert predict_photographs(random_model, photos, out, batched).kept == 1
    # a folder predicted on a GPU (auto: bf16), or by a model of another channel order
    record = json.loads((out / "predict.json").read_text())
    for key, value, problem in (
        ("precision", "bf16", "precision was 'bf16', now 'fp32'"),
        ("lesions", record["lesions"][::-1], "lesions was"),
    ):
        (out / "predict.json").write_text(json.dumps({**record, key: value}))
        with pytest.raises(ValueError, match=problem):
            predict_photographs(random_model, photos, out, batched)
    (out / "predict.json").write_text(json.dumps(record))
    # without --continue, another model writes over the photographs it predicts (as before),
    # and a later --continue with it predicts again what the first model wrote
    predict_photographs(other_model, [three_photographs / "b.png"], out, base)
    resumed = replace(base, resume=True)
    report = predict_photographs(other_model, [three_photographs], out, resumed)
    assert (report.predicted, report.kept) == (2, 1)
    (out / "predict.json").unlink()
    with pytest.raises(ValueError, match=f"{out} holds files but no predict.json"):
        predict_photographs(other_model, photos, out, resumed)
    (out / "predict.json").write_text("{not json")
    with pytest.raises(ValueError, match="predict.json: not a JSON record"):
        predict_photographs(other_model, photos, out, resumed)


def test_saved_probabilities_are_the_models_and_the_masks_are_them_thresholded(tmp_path):
    torch.manual_seed(3)
    model = build_model(TINY).eval()
    checkpoint = tmp_path / "model.safetensors"
    save_checkpoint(checkpoint, model.state_dict(), {"architecture": TINY.as_dict()})
    top, left = 11, 23  # a black margin: the field of view does not fill the photograph
    bgr = cv2.cvtColor(
        np.pad(rendered(8, 150, 190).image, ((top, 7), (left, 5), (0, 0))), cv2.COLOR_RGB2BGR
    )
    photo = tmp_path / "odd.png"
    assert cv2.imwrite(str(photo), bgr)
    argv = [
        "predict",
        str(checkpoint),
        "-i",
        str(photo),
        "-o",
        str(tmp_path / "out"),
        "--size",
        "64",
    ]
    assert (
        main(
            [
                *argv,
                "--threshold",
                "0.5",
                "--threshold",
                "MA=0.45",
                "--save-probabilities",
                "--no-progress",
            ]
        )
        == 0
    )

    # the reference: the model run by hand on the prepared photograph, mapped back to its grid
    prepared = prepare_photograph(bgr, 64, photo)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    normalised = (prepared.image / 255.0 - mean) / std
    with torch.no_grad():
        logits = model(torch.from_numpy(normalised.transpose(2, 0, 1)[None]).float())
    cache_probs = (
        torch.sigmoid(logits)[0].numpy().transpose(1, 2, 0) * prepared.cache_fov()[..., None]
    )
    native = prepared.geometry.map_to_native(np.ascontiguousarray(cache_probs, np.float32))
    native *= prepared.fov.native_mask()[..., None]

    with np.load(tmp_path / "out" / "odd" / "probabilities.npz") as saved:
        arrays = {name: saved[name] for name in saved.files}
    assert list(arrays) == list(TINY.lesions) == list(LESIONS)
    thresholds = {"EX": 0.5, "HE": 0.5, "MA": 0.45, "CWS": 0.5}
    for channel, (name, array) in enumerate(arrays.items()):
        assert array.dtype == np.float32 and array.shape == bgr.shape[:2]
        np.testing.assert_allclose(array, native[..., channel], atol=2e-6)
        mask = read_png(tmp_path / "out" / "odd" / f"{name}_mask.png")
        assert np.array_equal(mask > 0, array >= thresholds[name]), name
        assert 0 < np.count_nonzero(mask) < mask.size  # the threshold cuts through the map
        probability = read_png(tmp_path / "out" / "odd" / f"{name}_probability.png")
        assert np.array_equal(probability, np.rint(array * 255).astype(np.uint8))
