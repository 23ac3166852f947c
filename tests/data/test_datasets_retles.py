import pytest
from support.native_trees import retles_tree, write_mask

from lesionsoup.data.datasets import DatasetError, index_dataset

HAEMORRHAGES = ("retinal_hemorrhage", "preretinal_hemorrhage", "vitreous_hemorrhage")
PLAN = {
    "101_left": ("microaneurysm", *HAEMORRHAGES, "fibrous_proliferation"),
    "101_right": ("hard_exudate", "cotton_wool_spots", "neovascularization"),
    "102_left": ("preretinal_hemorrhage",),
    "102_right": (),
    **{
        f"{patient}_{eye}": ("microaneurysm",)
        for patient in range(200, 230)
        for eye in ("left", "right")
    },
}


def test_both_eyes_of_a_patient_share_a_split(tmp_path):
    frame = index_dataset("RETLES", retles_tree(tmp_path, PLAN), {})
    assert len(frame) == len(PLAN)
    assert (frame.groupby("patient")["split"].nunique() == 1).all()
    assert frame.groupby("patient").size().eq(2).all()
    assert set(frame["split"]) == {"train", "valid", "test"}
    assert frame.set_index("image_id").loc["101_left", "patient"] == "101"


def test_haemorrhage_union_is_the_default(tmp_path):
    frame = index_dataset("RETLES", retles_tree(tmp_path, PLAN), {}).set_index("image_id")
    masks = tmp_path / "lesion_segs_896x896"
    assert frame.loc["101_left", "mask_HE"] == "|".join(
        str(masks / "101_left" / f"{name}.png") for name in HAEMORRHAGES
    )
    assert frame.loc["102_left", "mask_HE"] == str(masks / "102_left/preretinal_hemorrhage.png")
    assert frame.loc["101_left", "mask_MA"] == str(masks / "101_left/microaneurysm.png")
    assert (
        frame.loc["101_left", ["mask_EX", "mask_CWS", "mask_NV", "mask_IRMA"]].tolist() == [""] * 4
    )


def test_retinal_haemorrhage_only(tmp_path):
    options = {"hemorrhage": "retinal"}
    frame = index_dataset("RETLES", retles_tree(tmp_path, PLAN), options).set_index("image_id")
    assert frame.loc["101_left", "mask_HE"] == str(
        tmp_path / "lesion_segs_896x896/101_left/retinal_hemorrhage.png"
    )
    assert frame.loc["102_left", "mask_HE"] == ""
    with pytest.raises(ValueError, match="'hemorrhage' must be one of"):
        index_dataset("RETLES", tmp_path, {"hemorrhage": "all"})


def test_other_lesions_and_images_without_mask_folder(tmp_path):
    frame = index_dataset("RETLES", retles_tree(tmp_path, PLAN), {}).set_index("image_id")
    right = frame.loc["101_right"]
    assert right["mask_EX"].endswith("101_right/hard_exudate.png")
    assert right["mask_CWS"].endswith("101_right/cotton_wool_spots.png")
    assert right["mask_NV"].endswith("101_right/neovascularization.png")
    assert not (tmp_path / "lesion_segs_896x896/102_right").exists()
    assert (frame.loc["102_right", "mask_EX":"mask_NV"] == "").all()


def test_extra_files_are_reported_and_junk_is_not(tmp_path, caplog):
    retles_tree(tmp_path, PLAN)
    (tmp_path / "images_896x896/.DS_Store").write_text("x")
    notes = tmp_path / "lesion_segs_896x896/101_left/notes.txt"
    notes.write_text("x")
    readme = tmp_path / "README.md"
    readme.write_text("x")
    assert len(index_dataset("RETLES", tmp_path, {"hemorrhage": "retinal"})) == len(PLAN)
    (warning,) = [record for record in caplog.records if record.levelname == "WARNING"]
    assert warning.getMessage() == f"RETLES: 2 unrecognised entries, not read: {readme}, {notes}"


def test_image_with_only_unknown_mask_names_is_an_error(tmp_path):
    retles_tree(tmp_path, PLAN)
    unknown = write_mask(tmp_path / "lesion_segs_896x896/102_right/hemorrhage.png")
    with pytest.raises(DatasetError, match=r"image\(s\) 102_right have no mask") as error:
        index_dataset("RETLES", tmp_path, {})
    assert str(unknown) in str(error.value)
    write_mask(tmp_path / "lesion_segs_896x896/102_right/microaneurysm.png")
    with pytest.raises(DatasetError, match="1 unrecognised entries"):
        index_dataset("RETLES", tmp_path, {}, unrecognised="error")


def test_mask_folder_without_image_is_named(tmp_path):
    retles_tree(tmp_path, PLAN)
    write_mask(tmp_path / "lesion_segs_896x896/999_left/microaneurysm.png")
    with pytest.raises(DatasetError, match="has no image") as error:
        index_dataset("RETLES", tmp_path, {})
    assert str(tmp_path / "lesion_segs_896x896" / "999_left") in str(error.value)


def test_layout_errors(tmp_path):
    (tmp_path / "images_896x896").mkdir()
    expected = "expected the RETLES folder holding 'images_896x896', 'lesion_segs_896x896'"
    with pytest.raises(DatasetError, match=expected):
        index_dataset("RETLES", tmp_path, {})
    (tmp_path / "lesion_segs_896x896").mkdir()
    with pytest.raises(DatasetError, match="no RETLES images found"):
        index_dataset("RETLES", tmp_path, {})
