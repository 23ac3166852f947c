import pytest
from native_trees import fgadr_tree, idrid_tree, write_image
from PIL import Image

from lesionsoup.data.datasets import ADAPTERS, DatasetError, index_dataset
from lesionsoup.data.manifest import COLUMNS, read_manifest, write_manifest


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
