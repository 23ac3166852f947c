import logging
from pathlib import Path

import pytest
from PIL import Image
from support.native_trees import ddr_tree, fgadr_tree, idrid_tree, retles_tree, write_image

from lesionsoup.data.datasets import ADAPTERS, DatasetError, index_dataset
from lesionsoup.data.datasets.native import ROOT_LAYOUTS
from lesionsoup.data.manifest import COLUMNS, read_manifest, write_manifest
from lesionsoup.data.synthetic.generator import generate


def test_registry_holds_the_five_datasets():
    assert sorted(ADAPTERS) == ["DDR", "FGADR", "IDRID", "MAPLES", "RETLES"]
    assert all(name == adapter.name for name, adapter in ADAPTERS.items())


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_missing_root_is_named(tmp_path, name):
    with pytest.raises(DatasetError, match="dataset root not found") as error:
        index_dataset(name, tmp_path / "nowhere", {})
    assert str(tmp_path / "nowhere") in str(error.value)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_empty_root_says_what_was_expected(tmp_path, name):
    with pytest.raises(DatasetError, match="expected") as error:
        index_dataset(name, tmp_path, {})
    assert str(tmp_path) in str(error.value)


def test_unknown_dataset_and_options():
    with pytest.raises(ValueError, match="unknown dataset 'EYEPACS'"):
        index_dataset("EYEPACS", "/tmp", {})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['hemorrhage'\] for IDRID"):
        index_dataset("IDRID", "/tmp", {"hemorrhage": "union"})
    with pytest.raises(ValueError, match=r"unknown split option\(s\) \['train'\]"):
        index_dataset("FGADR", "/tmp", {"split": {"train": 0.5}})


def test_manifest_round_trip_through_disk(tmp_path):
    root = idrid_tree(
        tmp_path / "idrid", {"train": {"IDRiD_01": ("MA",)}, "test": {"IDRiD_02": ()}}
    )
    frame = index_dataset("IDRID", root, {"split": {"seed": 3}})
    assert tuple(frame.columns) == COLUMNS
    write_manifest(frame, tmp_path / "IDRID.csv")
    assert read_manifest(tmp_path / "IDRID.csv").equals(frame)


def test_unreadable_image_is_named(tmp_path):
    root = fgadr_tree(tmp_path, {"0001_1": ()})
    broken = tmp_path / "Seg-set/Original_Images/0002_1.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="cannot read the image header") as error:
        index_dataset("FGADR", root, {})
    assert str(broken) in str(error.value)


def test_adding_an_image_moves_no_other_image(tmp_path):
    root = fgadr_tree(tmp_path, {f"{i:04d}_1": () for i in range(30)})
    before = index_dataset("FGADR", root, {}).set_index("image_id")["split"]
    write_image(root / "Seg-set/Original_Images/9999_1.png")
    after = index_dataset("FGADR", root, {}).set_index("image_id")["split"]
    assert after.drop("9999_1").sort_index().equals(before.sort_index())


def test_sizes_come_from_headers_without_decoding(tmp_path):
    image = write_image(tmp_path / "Seg-set/Original_Images/0001_1.jpg", width=640, height=480)
    data = image.read_bytes()
    image.write_bytes(data[: data.index(b"\xff\xda") + 20])  # scan cut: only the header reads
    frame = index_dataset("FGADR", tmp_path, {})
    assert (frame.loc[0, "width"], frame.loc[0, "height"]) == (640, 480)
    assert frame.loc[0, "image_path"] == str(image)
    with pytest.raises(OSError), Image.open(image) as decoded:
        decoded.load()


#: The top folder each download extracts to, and a writer of a small tree in it.
DOWNLOADS = {
    "IDRID": (
        "A. Segmentation",
        lambda base: idrid_tree(base, {"train": {"I1": ("MA",)}, "test": {"I2": ("HE",)}}),
    ),
    "DDR": (
        "lesion_segmentation",
        lambda base: ddr_tree(
            base, {"train": {"d1": ("EX",)}, "valid": {"d2": ()}, "test": {"d3": ("MA",)}}
        ),
    ),
    "FGADR": ("Seg-set", lambda base: fgadr_tree(base, {"0001_1": ("MA",), "0002_1": ("NV",)})),
    "RETLES": (
        "retinal-lesions",
        lambda base: retles_tree(
            base / "retinal-lesions", {"1_left": ("microaneurysm",), "1_right": ()}
        ),
    ),
}


@pytest.mark.parametrize("name", sorted(DOWNLOADS))
def test_roots_as_downloaded_one_level_above_or_extracted_twice(tmp_path, caplog, name):
    """Three roots of one doubly-extracted tree give one manifest, and the log names each layout."""
    top, write = DOWNLOADS[name]
    write(tmp_path / top)  # the archive extracted into a folder of its own name
    caplog.set_level(logging.INFO, logger="lesionsoup")
    inner = tmp_path / top / top
    frames = [index_dataset(name, root, {}, "error") for root in (inner, inner.parent, tmp_path)]
    assert frames[0].equals(frames[1]) and frames[0].equals(frames[2])
    assert set(frames[0]["image_path"].map(lambda path: Path(path).is_relative_to(inner))) == {True}
    found = [record.getMessage() for record in caplog.records if record.message.startswith(name)]
    assert found == [f"{name}: {inner} ({layout})" for layout in ROOT_LAYOUTS]


def test_dataset_names_are_case_insensitive(tmp_path):
    root = idrid_tree(tmp_path, {"train": {f"I{i}": ("MA",) for i in range(8)}, "test": {"T": ()}})
    lower = index_dataset("idrid", root, {})
    assert set(lower["dataset"]) == {"IDRID"}
    assert lower.equals(index_dataset("IDRID", root, {}))  # splits seeded by the registered name


def test_synthetic_trees_hold_nothing_unrecognised(tmp_path):
    trees = generate(tmp_path, images=4, seed=1, scale=0.05, datasets=sorted(DOWNLOADS))
    for name in DOWNLOADS:
        assert len(index_dataset(name, trees[name], {}, unrecognised="error")) == 4


def test_unknown_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unrecognised='ignore' is none of"):
        index_dataset("FGADR", tmp_path, {}, unrecognised="ignore")
