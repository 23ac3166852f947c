from collections import Counter

import pytest
from native_trees import maples_export_tree, maples_release_tree, messidor_tree, write_mask

from lesionsoup.data.datasets import DatasetError, index_dataset

EXPORT = {
    "train": {
        "20051019_38557_0100_PP": ("exudates", "hemorrhages", "vessels"),
        "20051020_43808_0100_PP": ("microaneurysms", "cottonWoolSpots", "neovascularization"),
        "20051020_44598_0100_PP": (),
    },
    "test": {"20051021_51160_0100_PP": ("hemorrhages",)},
}
RELEASE = {
    "train": {
        "20051019_38557_0100_PP": ("Exudates", "Hemorrhages", "Vessels"),
        "20051020_43808_0100_PP": ("Microaneurysms", "CottonWoolSpots", "Neovascularization"),
        "20051020_44598_0100_PP": ("Vessels",),
    },
    "test": {"20051021_51160_0100_PP": ("Hemorrhages", "OpticDisc")},
}
MESSIDOR = {
    "Base11": ["20051019_38557_0100_PP", "20051019_unlabelled_PP"],
    "Base12": ["20051020_43808_0100_PP", "20051020_44598_0100_PP"],
    "Base34": ["20051021_51160_0100_PP", "20051021_other_PP"],
}


def check_lesions(frame, masks_root):
    frame = frame.set_index("image_id")
    counts = Counter(frame["split"])
    assert counts["test"] == 1 and counts["valid"] >= 1 and counts["train"] + counts["valid"] == 3
    assert frame.loc["20051021_51160_0100_PP", "split"] == "test"
    first = frame.loc["20051019_38557_0100_PP"]
    assert first["mask_EX"].lower().endswith("exudates/20051019_38557_0100_pp.png")
    assert first["mask_EX"].startswith(str(masks_root))
    assert first["mask_HE"].lower().endswith("hemorrhages/20051019_38557_0100_pp.png")
    assert first[["mask_MA", "mask_CWS", "mask_NV", "mask_IRMA"]].tolist() == [""] * 4
    second = frame.loc["20051020_43808_0100_PP"]
    assert second["mask_MA"].lower().endswith("microaneurysms/20051020_43808_0100_pp.png")
    assert second["mask_CWS"].lower().endswith("cottonwoolspots/20051020_43808_0100_pp.png")
    assert second["mask_NV"].lower().endswith("neovascularization/20051020_43808_0100_pp.png")
    assert (frame.loc["20051020_44598_0100_PP", "mask_EX":"mask_NV"] == "").all()
    assert set(frame["width"]) == {12}


def test_package_export(tmp_path):
    frame = index_dataset("MAPLES", maples_export_tree(tmp_path, EXPORT), {})
    check_lesions(frame, tmp_path)
    image = frame.set_index("image_id").loc["20051019_38557_0100_PP", "image_path"]
    assert image == str(tmp_path / "train/fundus/20051019_38557_0100_PP.jpg")


def test_package_export_with_png_and_any_case(tmp_path):
    root = tmp_path / "export"
    maples_export_tree(root, EXPORT, image_suffix=".PNG")
    (root / "train").rename(root / "Train")
    (root / "test").rename(root / "TEST")
    (root / "Train/exudates").rename(root / "Train/Exudates")
    (root / "Train/fundus").rename(root / "Train/FUNDUS")
    check_lesions(index_dataset("MAPLES", root, {}), root)


def test_release_next_to_messidor_skips_unlabelled_images(tmp_path):
    maples_release_tree(tmp_path, RELEASE)
    messidor_tree(tmp_path, MESSIDOR)
    frame = index_dataset("MAPLES", tmp_path, {})
    check_lesions(frame, tmp_path / "MAPLES-DR")
    assert len(frame) == 4
    image = frame.set_index("image_id").loc["20051021_51160_0100_PP", "image_path"]
    assert image == str(tmp_path / "Base34/20051021_51160_0100_PP.tif")


def test_release_in_any_case_and_root_at_release_folder(tmp_path):
    maples_release_tree(tmp_path, RELEASE, release_folder="maples-dr")
    (tmp_path / "maples-dr/train").rename(tmp_path / "maples-dr/TRAIN")
    messidor_tree(tmp_path, {name.lower(): names for name, names in MESSIDOR.items()})
    check_lesions(index_dataset("MAPLES", tmp_path, {}), tmp_path)
    check_lesions(index_dataset("MAPLES", tmp_path / "maples-dr", {}), tmp_path)


def test_release_with_messidor_elsewhere(tmp_path):
    labels = maples_release_tree(tmp_path / "labels", RELEASE)
    messidor = messidor_tree(tmp_path / "messidor", MESSIDOR)
    (messidor / "Base11/Annotation_Base11.xls").write_text("x")
    frame = index_dataset("MAPLES", labels, {"messidor_root": str(messidor)})
    check_lesions(frame, labels)
    assert all(path.startswith(str(messidor)) for path in frame["image_path"])


def test_labelled_image_without_messidor_image_is_named(tmp_path):
    maples_release_tree(tmp_path, RELEASE)
    messidor_tree(tmp_path, {"Base11": MESSIDOR["Base11"]})
    with pytest.raises(DatasetError, match="'20051020_43808_0100_PP' has no MESSIDOR image"):
        index_dataset("MAPLES", tmp_path, {})


def test_messidor_name_twice_is_named(tmp_path):
    maples_release_tree(tmp_path, RELEASE)
    messidor_tree(tmp_path, {**MESSIDOR, "Base13": ["20051019_38557_0100_PP"]})
    with pytest.raises(DatasetError, match="two MESSIDOR images") as error:
        index_dataset("MAPLES", tmp_path, {})
    assert str(tmp_path / "Base13" / "20051019_38557_0100_PP.tif") in str(error.value)


def test_export_mask_without_image_is_named(tmp_path):
    maples_export_tree(tmp_path, EXPORT)
    orphan = write_mask(tmp_path / "test/exudates/20051019_38557_0100_PP.png")
    with pytest.raises(DatasetError, match="has no image") as error:
        index_dataset("MAPLES", tmp_path, {})
    assert str(orphan) in str(error.value)


def test_layout_errors(tmp_path):
    with pytest.raises(DatasetError, match="maples-dr package export.*release archive"):
        index_dataset("MAPLES", tmp_path, {})
    maples_export_tree(tmp_path, EXPORT)
    with pytest.raises(ValueError, match="'messidor_root' applies to the MAPLES-DR release"):
        index_dataset("MAPLES", tmp_path, {"messidor_root": str(tmp_path)})
    labels = maples_release_tree(tmp_path / "release", RELEASE)
    with pytest.raises(DatasetError, match="dataset root not found") as error:
        index_dataset("MAPLES", labels, {"messidor_root": str(tmp_path / "none")})
    assert str(tmp_path / "none") in str(error.value)
