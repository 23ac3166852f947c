import logging
from collections import Counter
from pathlib import Path

import pytest
from support.native_trees import (
    maples_additional_tree,
    maples_export_tree,
    maples_release_tree,
    messidor_tree,
    messidor_zip,
    write_mask,
)

from lesionsoup.data.archives import image_size, read_bytes, split_member_path
from lesionsoup.data.datasets import DatasetError, index_dataset
from lesionsoup.data.datasets.maples import scan

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
    with pytest.raises(DatasetError, match="2 labelled image.* no MESSIDOR image") as error:
        index_dataset("MAPLES", tmp_path, {})
    assert "'20051020_43808_0100_PP', '20051020_44598_0100_PP'" in str(error.value)
    assert str(tmp_path / "MAPLES-DR" / "train") in str(error.value)


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
    with pytest.raises(DatasetError, match="package export.*MAPLES-DR.zip.*AdditionalData.zip"):
        index_dataset("MAPLES", tmp_path, {})
    maples_export_tree(tmp_path, EXPORT)
    with pytest.raises(ValueError, match="'messidor_root' applies to the MAPLES-DR release"):
        index_dataset("MAPLES", tmp_path, {"messidor_root": str(tmp_path)})
    labels = maples_release_tree(tmp_path / "release", RELEASE)
    with pytest.raises(DatasetError, match="dataset root not found") as error:
        index_dataset("MAPLES", labels, {"messidor_root": str(tmp_path / "none")})
    assert str(tmp_path / "none") in str(error.value)


OPTIONS = {"messidor_root": None, "duplicates": "exclude", "unrecognised": "warn"}
ADDITIONAL = {
    "train": {"20051019_38557_0100_PP": ("Exudates", "Vessels"), "20051020_43808_0100_PP": ()},
    "test": {"20051021_51160_0100_PP": ("Hemorrhages", "OpticDisc")},
    "duplicates": {"20051020_44598_0100_PP": ("Exudates",)},
}
#: Boxes that are not centred on the 12 x 8 photograph, one reaching past its top edge.
BOXES = {
    "20051019_38557_0100_PP": (0, 0, 8, 8),
    "20051020_43808_0100_PP": (4, -1, 13, 8),
    "20051021_51160_0100_PP": (3, 1, 10, 8),
    "20051020_44598_0100_PP": (1, 0, 9, 8),
}


def test_messidor_found_nested_in_any_folder(tmp_path):
    maples_release_tree(tmp_path, RELEASE)
    messidor_tree(tmp_path / "MESSIDOR" / "images", MESSIDOR)
    frame = index_dataset("MAPLES", tmp_path, {})
    check_lesions(frame, tmp_path / "MAPLES-DR")
    image = frame.set_index("image_id").loc["20051021_51160_0100_PP", "image_path"]
    assert image == str(tmp_path / "MESSIDOR/images/Base34/20051021_51160_0100_PP.tif")


def test_messidor_read_inside_base_zip_archives(tmp_path):
    maples_release_tree(tmp_path, RELEASE)
    for base, names in MESSIDOR.items():
        messidor_zip(tmp_path / "MESSIDOR" / f"{base}.zip", {base: names})
    messidor_tree(tmp_path / "MESSIDOR", {"Base11": ["20051019_38557_0100_PP"]})
    images = {image.image_id: image for image in scan(tmp_path, OPTIONS)}
    assert sorted(images) == sorted(name for split in RELEASE.values() for name in split)
    extracted = images["20051019_38557_0100_PP"].image_path
    assert extracted == tmp_path / "MESSIDOR/Base11/20051019_38557_0100_PP.tif"
    zipped = images["20051021_51160_0100_PP"].image_path
    assert split_member_path(zipped) == (
        tmp_path / "MESSIDOR/Base34.zip",
        "Base34/20051021_51160_0100_PP.tif",
    )
    assert image_size(zipped) == (12, 8) and read_bytes(zipped)[:2] in (b"II", b"MM")


def test_unrecognised_biomarker_folder_is_named(tmp_path, caplog):
    maples_release_tree(tmp_path, RELEASE)
    write_mask(tmp_path / "MAPLES-DR/train/HardExudates/20051019_38557_0100_PP.png")
    messidor_tree(tmp_path, MESSIDOR)
    with caplog.at_level(logging.WARNING):
        check_lesions(index_dataset("MAPLES", tmp_path, {}), tmp_path / "MAPLES-DR")
    assert str(tmp_path / "MAPLES-DR/train/HardExudates") in caplog.text
    with pytest.raises(DatasetError, match="HardExudates"):
        index_dataset("MAPLES", tmp_path, {}, unrecognised="error")


@pytest.mark.parametrize("layout", ["export", "release"])
def test_image_labelled_only_in_unrecognised_folders_is_an_error(tmp_path, layout):
    plan = {
        split: dict(images) for split, images in (EXPORT if layout == "export" else RELEASE).items()
    }
    plan["train"]["20051022_00000_0100_PP"] = ("HardExudates",)
    if layout == "export":
        maples_export_tree(tmp_path, plan)
    else:
        maples_release_tree(tmp_path, plan)
        messidor_tree(tmp_path, {**MESSIDOR, "Base13": ["20051022_00000_0100_PP"]})
    with pytest.raises(DatasetError, match="20051022_00000_0100_PP.*HardExudates"):
        index_dataset("MAPLES", tmp_path, {})


def additional(tmp_path: Path) -> Path:
    maples_additional_tree(tmp_path, ADDITIONAL, BOXES)
    return messidor_tree(tmp_path / "messidor", MESSIDOR)


def test_additional_data_split_from_record_without_duplicates(tmp_path):
    messidor = additional(tmp_path)
    frame = index_dataset("MAPLES", tmp_path / "AdditionalData", {"messidor_root": str(messidor)})
    frame = frame.set_index("image_id")
    assert sorted(frame.index) == sorted([*ADDITIONAL["train"], *ADDITIONAL["test"]])
    assert frame.loc["20051021_51160_0100_PP", "split"] == "test"
    assert set(frame["split"]) <= {"train", "valid", "test"}
    first = frame.loc["20051019_38557_0100_PP"]
    assert first["mask_EX"] == str(
        tmp_path / "AdditionalData/annotations/Exudates/20051019_38557_0100_PP.png"
    )
    assert first["image_path"] == str(messidor / "Base11/20051019_38557_0100_PP.tif")
    assert (frame.loc["20051020_43808_0100_PP", "mask_EX":"mask_NV"] == "").all()


def test_additional_data_boxes_and_duplicates_included(tmp_path):
    additional(tmp_path)
    images = {
        image.image_id: image for image in scan(tmp_path, {**OPTIONS, "duplicates": "include"})
    }
    assert sorted(images) == sorted(BOXES)
    assert images["20051020_44598_0100_PP"].split == "train"
    assert images["20051020_43808_0100_PP"].roi == "4 -1 13 8"
    assert images["20051021_51160_0100_PP"].roi == "3 1 10 8"
    with pytest.raises(ValueError, match="'duplicates' must be one of"):
        scan(tmp_path, {**OPTIONS, "duplicates": "keep"})


def test_additional_data_errors_name_the_file(tmp_path):
    additional(tmp_path)
    rois = tmp_path / "AdditionalData/MESSIDOR-ROIs.csv"
    rois.write_text("\n".join(rois.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(DatasetError, match="no region of interest for") as error:
        index_dataset("MAPLES", tmp_path, {})
    assert str(rois) in str(error.value)
    rois.write_text("name,x0,y0,x1,y1,W,H\n20051019_38557_0100_PP,a,0,8,8,12,8\n")
    with pytest.raises(DatasetError, match="line 2 is not name,x0"):
        index_dataset("MAPLES", tmp_path, {})
    record = tmp_path / "AdditionalData/dataset_record.yaml"
    record.write_text("train: [a]\n")
    with pytest.raises(DatasetError, match="expected the lists") as error:
        index_dataset("MAPLES", tmp_path, {})
    assert str(record) in str(error.value)


def test_manifest_of_zipped_messidor_and_roi_boxes(tmp_path):
    maples_additional_tree(tmp_path, ADDITIONAL, BOXES)
    for base, names in MESSIDOR.items():
        messidor_zip(tmp_path / "MESSIDOR" / f"{base}.zip", {base: names})
    frame = index_dataset("MAPLES", tmp_path, {}).set_index("image_id")
    assert frame.loc["20051020_43808_0100_PP", "mask_roi"] == "4 -1 13 8"
    image = frame.loc["20051021_51160_0100_PP", "image_path"]
    assert image == str(tmp_path / "MESSIDOR/Base34.zip") + "::Base34/20051021_51160_0100_PP.tif"
    assert frame.loc["20051021_51160_0100_PP", ["width", "height"]].tolist() == [12, 8]
