from collections import Counter

import pytest
from support.native_trees import IDRID_IMAGES, IDRID_MASKS, idrid_tree, write_image, write_mask

from lesionsoup.data.datasets import DatasetError, index_dataset

PLAN = {
    "train": {
        "IDRiD_01": ("MA", "HE", "EX", "SE", "OD"),
        "IDRiD_02": ("MA", "HE", "EX"),
        "IDRiD_03": ("MA",),
    },
    "test": {"IDRiD_04": ("MA", "HE", "EX", "SE"), "IDRiD_05": ("HE",)},
}
TRAIN = IDRID_IMAGES / "a. Training Set"


def test_official_split_with_valid_carved_from_train(tmp_path):
    frame = index_dataset("IDRID", idrid_tree(tmp_path, PLAN), {})
    splits = dict(zip(frame["image_id"], frame["split"], strict=True))
    assert splits["IDRiD_04"] == splits["IDRiD_05"] == "test"
    counts = Counter(splits.values())
    assert counts["valid"] >= 1 and counts["train"] + counts["valid"] == 3
    assert list(frame["dataset"].unique()) == ["IDRID"]
    assert list(frame["patient"]) == list(frame["image_id"])
    assert set(frame["width"]) == {12} and set(frame["height"]) == {8}


def test_masks_are_filled_where_files_exist(tmp_path):
    frame = index_dataset("IDRID", idrid_tree(tmp_path, PLAN), {}).set_index("image_id")
    first = frame.loc["IDRiD_01"]
    assert first["mask_MA"] == str(
        tmp_path / IDRID_MASKS / "a. Training Set" / "1. Microaneurysms" / "IDRiD_01_MA.tif"
    )
    assert first["mask_CWS"].endswith("4. Soft Exudates/IDRiD_01_SE.tif")
    assert first["image_path"] == str(tmp_path / TRAIN / "IDRiD_01.jpg")
    assert frame.loc["IDRiD_02", "mask_CWS"] == ""
    assert frame.loc["IDRiD_03", ["mask_HE", "mask_EX", "mask_CWS"]].tolist() == ["", "", ""]
    assert frame.loc["IDRiD_05", "mask_HE"].endswith(
        "b. Testing Set/2. Haemorrhages/IDRiD_05_HE.tif"
    )
    assert (frame[["mask_IRMA", "mask_NV"]] == "").all().all()


def test_test_set_lacking_haemorrhage_and_soft_exudate_files(tmp_path):
    plan = {**PLAN, "test": {"IDRiD_55": ("MA", "EX"), "IDRiD_56": ("MA",)}}
    idrid_tree(tmp_path, plan)
    masks = tmp_path / IDRID_MASKS
    masks.rename(masks.with_name(masks.name.upper()))  # any letter case of the folders
    frame = index_dataset("IDRID", tmp_path, {}, unrecognised="error").set_index("image_id")
    assert not (masks.with_name(masks.name.upper()) / "b. Testing Set" / "2. Haemorrhages").exists()
    assert frame.loc[["IDRiD_55", "IDRiD_56"], ["mask_HE", "mask_CWS"]].eq("").all().all()
    assert frame.loc["IDRiD_55", "mask_EX"].endswith("3. Hard Exudates/IDRiD_55_EX.tif")


def test_extra_files_are_reported_once_and_junk_is_not(tmp_path, caplog):
    idrid_tree(tmp_path, PLAN)
    write_image(tmp_path / TRAIN / "IDRiD_06.JPG")
    for junk in (TRAIN / ".DS_Store", TRAIN / "Thumbs.db", IDRID_IMAGES / "README.txt"):
        (tmp_path / junk).write_text("x")
    (tmp_path / "A. Segmentation" / "extra.csv").write_text("a,b\n")
    frame = index_dataset("IDRID", tmp_path, {})
    assert len(frame) == 6 and "IDRiD_06" in set(frame["image_id"])
    (warning,) = [record for record in caplog.records if record.levelname == "WARNING"]
    assert warning.getMessage() == (
        f"IDRID: 2 unrecognised entries, not read: {tmp_path / IDRID_IMAGES / 'README.txt'}, "
        f"{tmp_path / 'A. Segmentation' / 'extra.csv'}"
    )
    with pytest.raises(DatasetError, match="2 unrecognised entries"):
        index_dataset("IDRID", tmp_path, {}, unrecognised="error")


def _rename(tmp_path, folder: str, new_name: str):
    lesion_folder = tmp_path / IDRID_MASKS / "a. Training Set" / folder
    return lesion_folder.rename(lesion_folder.with_name(new_name))


def test_misnamed_lesion_folder_warns_or_fails(tmp_path, caplog):
    idrid_tree(tmp_path, PLAN)
    renamed = _rename(tmp_path, "3. Hard Exudates", "3. Hard Exudate")
    frame = index_dataset("IDRID", tmp_path, {}).set_index("image_id")
    assert frame.loc["IDRiD_01", "mask_EX"] == "" and frame.loc["IDRiD_04", "mask_EX"] != ""
    assert str(renamed) in caplog.text
    with pytest.raises(DatasetError, match="unrecognised entries") as error:
        index_dataset("IDRID", tmp_path, {}, unrecognised="error")
    assert str(renamed) in str(error.value)


def test_image_left_without_masks_by_a_misnamed_folder_is_an_error(tmp_path):
    idrid_tree(tmp_path, PLAN)
    renamed = _rename(tmp_path, "1. Microaneurysms", "1. MA")
    with pytest.raises(DatasetError, match=r"image\(s\) IDRiD_03 have no mask") as error:
        index_dataset("IDRID", tmp_path, {})
    assert str(renamed) in str(error.value)


def test_mask_without_image_is_named(tmp_path):
    idrid_tree(tmp_path, PLAN)
    orphan = write_mask(
        tmp_path / IDRID_MASKS / "a. Training Set/1. Microaneurysms/IDRiD_09_MA.tif"
    )
    with pytest.raises(DatasetError, match="has no image") as error:
        index_dataset("IDRID", tmp_path, {})
    assert str(orphan) in str(error.value)


def test_duplicated_id_names_both_files(tmp_path):
    idrid_tree(tmp_path, {**PLAN, "test": {**PLAN["test"], "IDRiD_01": ()}})
    with pytest.raises(DatasetError, match="repeats") as error:
        index_dataset("IDRID", tmp_path, {})
    assert str(tmp_path / TRAIN / "IDRiD_01.jpg") in str(error.value)
    assert str(tmp_path / IDRID_IMAGES / "b. Testing Set" / "IDRiD_01.jpg") in str(error.value)


def test_layout_errors_name_the_expected_folder(tmp_path):
    (tmp_path / "A. Segmentation").mkdir()
    with pytest.raises(DatasetError, match="expected the IDRID folder holding '1. Original"):
        index_dataset("IDRID", tmp_path, {})
    (tmp_path / IDRID_MASKS).mkdir()
    (tmp_path / IDRID_IMAGES).mkdir()
    with pytest.raises(DatasetError, match="'1. Original Images/a. Training Set'"):
        index_dataset("IDRID", tmp_path, {})


def test_zero_images(tmp_path):
    idrid_tree(tmp_path, {"train": {}, "test": {}})
    assert (tmp_path / IDRID_MASKS / "b. Testing Set").is_dir()
    with pytest.raises(DatasetError, match="no IDRID images found"):
        index_dataset("IDRID", tmp_path, {})
