from collections import Counter

import pytest
from support.native_trees import fgadr_tree, write_mask

from lesionsoup.data.datasets import DatasetError, index_dataset
from lesionsoup.data.splits import seeded_split

PLAN = {
    f"{i:04d}_{i % 3 + 1}": ("MA", "HE") if i % 2 else ("EX", "SE", "IRMA", "NV")
    for i in range(1, 21)
}


def test_seeded_split_treats_each_image_as_a_patient(tmp_path):
    frame = index_dataset("FGADR", fgadr_tree(tmp_path, PLAN), {"split": {"seed": 5}})
    assert list(frame["patient"]) == list(frame["image_id"])
    parts = seeded_split(list(PLAN), "FGADR", 5, {"test": 0.3, "valid": 0.15})
    expected = dict(zip(PLAN, parts, strict=True))
    assert dict(zip(frame["image_id"], frame["split"], strict=True)) == expected
    assert set(Counter(frame["split"])) == {"train", "valid", "test"}


def test_split_options_change_the_split(tmp_path):
    fgadr_tree(tmp_path, PLAN)
    base = index_dataset("FGADR", tmp_path, {})
    assert not base.equals(index_dataset("FGADR", tmp_path, {"split": {"seed": 1}}))
    tested = index_dataset("FGADR", tmp_path, {"split": {"test": 0.6, "valid": 0.1}})
    assert Counter(tested["split"])["test"] > Counter(base["split"])["test"]


def test_all_six_lesion_folders(tmp_path):
    frame = index_dataset("FGADR", fgadr_tree(tmp_path, PLAN), {}).set_index("image_id")
    odd, even = frame.loc["0001_2"], frame.loc["0002_3"]
    assert odd["mask_HE"] == str(tmp_path / "Seg-set/Hemohedge_Masks/0001_2.png")
    assert odd["mask_MA"].endswith("Microaneurysms_Masks/0001_2.png")
    assert odd[["mask_EX", "mask_CWS", "mask_IRMA", "mask_NV"]].tolist() == ["", "", "", ""]
    assert even["mask_CWS"].endswith("SoftExudate_Masks/0002_3.png")
    assert even["mask_IRMA"].endswith("IRMA_Masks/0002_3.png")
    assert even["mask_NV"].endswith("Neovascularization_Masks/0002_3.png")
    assert even["mask_HE"] == ""


def test_extra_files_are_reported_and_junk_is_not(tmp_path, caplog):
    fgadr_tree(tmp_path, PLAN)
    (tmp_path / "Seg-set/Original_Images/Thumbs.db").write_text("x")
    readme = tmp_path / "Seg-set/README.md"
    readme.write_text("x")
    assert len(index_dataset("FGADR", tmp_path, {})) == 20
    (warning,) = [record for record in caplog.records if record.levelname == "WARNING"]
    assert warning.getMessage() == f"FGADR: 1 unrecognised entries, not read: {readme}"


def test_respelled_folder_is_reported_and_an_image_it_empties_is_an_error(tmp_path):
    fgadr_tree(tmp_path, PLAN)
    haemorrhages = tmp_path / "Seg-set/Hemohedge_Masks"
    respelled = haemorrhages.rename(haemorrhages.with_name("Hemorrhage_Masks"))
    with pytest.raises(DatasetError, match="unrecognised entries") as error:
        index_dataset("FGADR", tmp_path, {}, unrecognised="error")
    assert str(respelled) in str(error.value)
    for image_id in PLAN:
        if "MA" in PLAN[image_id]:
            (tmp_path / "Seg-set/Microaneurysms_Masks" / f"{image_id}.png").unlink()
    with pytest.raises(DatasetError, match=r"image\(s\) 0001_2, 0003_1, .* have no mask"):
        index_dataset("FGADR", tmp_path, {})


def test_errors(tmp_path):
    with pytest.raises(DatasetError, match="expected the FGADR folder holding 'Original_Images'"):
        index_dataset("FGADR", tmp_path, {})
    (tmp_path / "Seg-set/Original_Images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no FGADR images found"):
        index_dataset("FGADR", tmp_path, {})
    orphan = write_mask(tmp_path / "Seg-set/IRMA_Masks/0099_1.png")
    with pytest.raises(DatasetError, match="has no image") as error:
        index_dataset("FGADR", tmp_path, {})
    assert str(orphan) in str(error.value)
