import logging
from pathlib import Path

import pytest
from support.native_trees import IDRID_MASKS, IDRID_SPLITS, idrid_tree, write_image

from lesionsoup.core.lesions import Lesion
from lesionsoup.data.datasets import index_dataset
from lesionsoup.data.datasets.native import (
    NAMED_AT_MOST,
    ROOT_LAYOUTS,
    DatasetError,
    NativeImage,
    Unrecognised,
    drop_unreadable,
    existing_root,
    find_child,
    image_files,
    locate_root,
    report_unrecognised,
    require_folder,
    stray_files,
    unknown_entries,
)


def test_find_child_ignores_case_and_refuses_ambiguity(tmp_path):
    (tmp_path / "Train").mkdir()
    assert find_child(tmp_path, "train") == tmp_path / "Train"
    assert find_child(tmp_path, "test") is None
    assert find_child(tmp_path / "none", "train") is None
    (tmp_path / "TRAIN").mkdir()
    with pytest.raises(DatasetError, match="several entries named 'train'"):
        find_child(tmp_path, "train")


def test_image_files_skip_junk_and_refuse_two_images_per_id(tmp_path):
    write_image(tmp_path / "a.JPG")
    write_image(tmp_path / "b.tif")
    (tmp_path / ".DS_Store").write_text("x")
    (tmp_path / "._a.jpg").write_text("x")
    (tmp_path / "Thumbs.db").write_text("x")
    (tmp_path / "c.png").mkdir()
    assert image_files(tmp_path) == {"a": tmp_path / "a.JPG", "b": tmp_path / "b.tif"}
    write_image(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="two images for one id") as error:
        image_files(tmp_path)
    assert str(tmp_path / "a.JPG") in str(error.value) and str(tmp_path / "a.png") in str(
        error.value
    )


def test_locate_root_searches_two_levels_down_and_logs_the_layout(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    inner = tmp_path / "Seg-set" / "Seg-set"
    (inner / "Original_Images").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "Seg-set" / "Original_Images").mkdir(parents=True)
    for root in (inner, tmp_path / "Seg-set", tmp_path):
        assert locate_root(root, "FGADR", ["original_images"]) == inner
    assert [record.getMessage().split("(")[-1] for record in caplog.records] == [
        f"{layout})" for layout in ROOT_LAYOUTS
    ]


def test_locate_root_refuses_two_candidates_and_names_what_it_expected(tmp_path):
    for copy in ("a", "b"):
        (tmp_path / copy / "x" / "y").mkdir(parents=True)
    with pytest.raises(DatasetError, match="several DS folders") as error:
        locate_root(tmp_path, "DS", ["x/y"])
    assert str(tmp_path / "a") in str(error.value) and str(tmp_path / "b") in str(error.value)
    with pytest.raises(DatasetError, match="expected the DS folder holding 'z'"):
        locate_root(tmp_path, "DS", ["z"])


def _image(image_id: str, *lesions: Lesion) -> NativeImage:
    return NativeImage(
        image_id, Path(f"{image_id}.jpg"), masks={les: [Path("m")] for les in lesions}
    )


def test_unknown_entries_and_stray_files(tmp_path):
    write_image(tmp_path / "Odd folder" / "IDRiD_01_MA.tif")
    write_image(tmp_path / "known" / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "Thumbs.db").write_text("x")
    (tmp_path / "__MACOSX").mkdir()
    found = unknown_entries(tmp_path, ["KNOWN"])
    assert found == [
        Unrecognised(tmp_path / "Odd folder", frozenset({"IDRiD_01_MA"})),
        Unrecognised(tmp_path / "notes.txt", frozenset({"notes"})),
    ]
    assert [entry.path.name for entry in stray_files(tmp_path)] == [
        "Odd folder",
        "known",
        "notes.txt",
    ]


def test_report_warns_once_or_fails_under_error(tmp_path, caplog):
    entries = [Unrecognised(tmp_path / name) for name in ("b.txt", "a.txt")]
    images = [_image("x", Lesion.MA)]
    report_unrecognised("DS", [], images, "error")
    assert not caplog.records
    report_unrecognised("DS", entries, images, "warn")
    (record,) = caplog.records
    assert record.levelname == "WARNING"
    assert (
        record.getMessage()
        == f"DS: 2 unrecognised entries, not read: {tmp_path}/a.txt, {tmp_path}/b.txt"
    )
    with pytest.raises(DatasetError, match="DS: 2 unrecognised entries") as error:
        report_unrecognised("DS", entries, images, "error")
    assert str(tmp_path / "b.txt") in str(error.value)
    with pytest.raises(ValueError, match="policy 'ignore'"):
        report_unrecognised("DS", entries, images, "ignore")


def test_an_image_whose_masks_an_unknown_entry_holds_is_an_error(tmp_path):
    folder = Unrecognised(tmp_path / "Microaneurysm", frozenset({"IDRiD_01_MA", "IDRiD_02_MA"}))
    images = [_image("IDRiD_01"), _image("IDRiD_02", Lesion.HE), _image("IDRiD_03")]
    with pytest.raises(DatasetError, match=r"image\(s\) IDRiD_01 have no mask") as error:
        report_unrecognised("IDRID", [folder], images, "warn")
    assert str(folder.path) in str(error.value)
    report_unrecognised("IDRID", [Unrecognised(tmp_path / "empty")], images, "warn")


def test_long_listings_are_counted(tmp_path, caplog):
    entries = [Unrecognised(tmp_path / f"{index:03d}.txt") for index in range(NAMED_AT_MOST + 5)]
    report_unrecognised("DS", entries, [], "warn")
    message = caplog.records[0].getMessage()
    assert message.endswith(" and 5 more") and f"{NAMED_AT_MOST - 1:03d}.txt" in message
    assert f"{NAMED_AT_MOST:03d}.txt" not in message


def test_require_folder_names_the_missing_path(tmp_path):
    (tmp_path / "a" / "file").parent.mkdir()
    (tmp_path / "a" / "file").write_text("x")
    assert require_folder(tmp_path, "A") == tmp_path / "a"
    with pytest.raises(DatasetError, match="expected the folder 'a/file'") as error:
        require_folder(tmp_path, "a", "file")
    assert str(tmp_path) in str(error.value)


def test_a_root_that_is_a_file_is_called_one(tmp_path):
    photo = write_image(tmp_path / "photo.png")
    with pytest.raises(DatasetError, match="is a file, not a folder") as error:
        existing_root(photo)
    assert str(photo) in str(error.value)
    with pytest.raises(DatasetError, match="not found"):
        existing_root(tmp_path / "absent")


def test_a_dangling_mask_link_is_named_under_error_and_leaves_its_image_out_under_warn(
    tmp_path, caplog
):
    plan = {"train": {"IDRiD_01": ("MA", "EX"), "IDRiD_02": ()}, "test": {"IDRiD_03": ("EX",)}}
    root = idrid_tree(tmp_path / "idrid", plan)
    folder = root / IDRID_MASKS / IDRID_SPLITS["train"] / "1. Microaneurysms"
    mask = folder / "IDRiD_01_MA.tif"
    mask.unlink()
    mask.symlink_to(tmp_path / "annex" / "SHA256E-s1--0.tif")
    with pytest.raises(DatasetError, match="cannot be opened") as error:
        index_dataset("IDRID", root, {}, unrecognised="error")
    assert f"{mask} (the MA mask of IDRiD_01: a symbolic link to nothing" in str(error.value)
    caplog.set_level(logging.WARNING)
    manifest = index_dataset("IDRID", root, {}, unrecognised="warn")
    assert sorted(manifest["image_id"]) == ["IDRiD_02", "IDRiD_03"]
    assert "left out of the manifest, their lesions unknown" in caplog.text
    assert str(mask) in caplog.text


def test_a_listed_file_that_cannot_be_opened_is_named(tmp_path):
    photo = write_image(tmp_path / "a.png")
    folder_as_mask = tmp_path / "b.png"
    folder_as_mask.mkdir()
    images = [
        NativeImage("a", photo, masks={Lesion.EX: [photo]}),
        NativeImage("b", photo, masks={Lesion.HE: [folder_as_mask]}),
    ]
    assert [image.image_id for image in drop_unreadable("X", images, "warn")] == ["a"]
    with pytest.raises(DatasetError, match=r"b\.png \(the HE mask of b: cannot be opened"):
        drop_unreadable("X", images, "error")
