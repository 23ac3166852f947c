from collections import Counter

import pytest
from support.native_trees import ddr_tree, write_mask

from lesionsoup.data.datasets import DatasetError, index_dataset

PLAN = {
    "train": {"007-1774-100": ("EX", "HE", "MA", "SE"), "007-1775-100": ("HE",), "t3": ()},
    "valid": {"v1": ("MA", "SE"), "v2": ()},
    "test": {"s1": ("EX",)},
}


def test_official_splits_are_kept(tmp_path):
    frame = index_dataset("DDR", ddr_tree(tmp_path, PLAN), {})
    assert Counter(frame["split"]) == {"train": 3, "valid": 2, "test": 1}
    assert list(frame["image_id"]) == ["007-1774-100", "007-1775-100", "t3", "v1", "v2", "s1"]


def test_masks_from_both_label_folder_names(tmp_path):
    frame = index_dataset("DDR", ddr_tree(tmp_path, PLAN), {}).set_index("image_id")
    assert frame.loc["007-1774-100", "mask_CWS"] == str(
        tmp_path / "lesion_segmentation/train/label/SE/007-1774-100.tif"
    )
    assert frame.loc["007-1775-100", ["mask_EX", "mask_HE", "mask_MA"]].tolist()[0::2] == ["", ""]
    assert frame.loc["v1", "mask_MA"].endswith("valid/segmentation label/MA/v1.tif")
    assert frame.loc["v1", "mask_EX"] == "" and frame.loc["s1", "mask_EX"].endswith(
        "test/label/EX/s1.tif"
    )


def test_extra_entries_are_reported_and_junk_is_not(tmp_path, caplog):
    ddr_tree(tmp_path, PLAN)
    (tmp_path / "lesion_segmentation/train/image/.DS_Store").write_text("x")
    (tmp_path / "lesion_segmentation/train/label/EX/Thumbs.db").write_text("x")
    notes = tmp_path / "lesion_segmentation/train/label/notes"
    notes.mkdir()
    (tmp_path / "DDR_grading.csv").write_text("a\n")  # beside the dataset folder: not its business
    assert len(index_dataset("DDR", tmp_path, {})) == 6
    (warning,) = [record for record in caplog.records if record.levelname == "WARNING"]
    assert warning.getMessage() == f"DDR: 1 unrecognised entries, not read: {notes}"
    with pytest.raises(DatasetError, match="1 unrecognised entries") as error:
        index_dataset("DDR", tmp_path, {}, unrecognised="error")
    assert str(notes) in str(error.value)


def test_image_whose_masks_lie_in_an_unknown_folder_is_an_error(tmp_path):
    ddr_tree(tmp_path, PLAN)
    soft = write_mask(tmp_path / "lesion_segmentation/train/label/CWS/t3.tif")
    with pytest.raises(DatasetError, match=r"image\(s\) t3 have no mask") as error:
        index_dataset("DDR", tmp_path, {})
    assert str(soft.parent) in str(error.value)


def test_mask_without_image_is_named(tmp_path):
    ddr_tree(tmp_path, PLAN)
    orphan = write_mask(tmp_path / "lesion_segmentation/test/label/HE/v1.tif")
    with pytest.raises(DatasetError, match="'v1' has no image") as error:
        index_dataset("DDR", tmp_path, {})
    assert str(orphan) in str(error.value)


def test_missing_label_folder(tmp_path):
    ddr_tree(tmp_path, {**PLAN, "test": {}})
    (tmp_path / "lesion_segmentation/test/label").rmdir()
    with pytest.raises(
        DatasetError, match="expected a folder 'label' or 'segmentation label'"
    ) as e:
        index_dataset("DDR", tmp_path, {})
    assert str(tmp_path / "lesion_segmentation" / "test") in str(e.value)


def test_missing_split_and_zero_images(tmp_path):
    ddr_tree(tmp_path, {"train": PLAN["train"]})
    with pytest.raises(DatasetError, match="expected the DDR folder holding .*'valid/image'"):
        index_dataset("DDR", tmp_path, {})
    empty = ddr_tree(tmp_path / "empty", {"train": {}, "valid": {}, "test": {}})
    with pytest.raises(DatasetError, match="no DDR images found"):
        index_dataset("DDR", empty, {})
