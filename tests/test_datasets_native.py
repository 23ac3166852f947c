import pytest
from native_trees import write_image

from lesionsoup.data.datasets.native import (
    DatasetError,
    find_child,
    image_files,
    locate_root,
    require_folder,
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


def test_locate_root_accepts_the_marker_or_its_parent(tmp_path):
    (tmp_path / "Seg-set").mkdir()
    assert locate_root(tmp_path, "seg-set") == tmp_path / "Seg-set"
    assert locate_root(tmp_path / "Seg-set", "Seg-set") == tmp_path / "Seg-set"
    with pytest.raises(DatasetError, match="expected the folder 'Other'"):
        locate_root(tmp_path, "Other")


def test_require_folder_names_the_missing_path(tmp_path):
    (tmp_path / "a" / "file").parent.mkdir()
    (tmp_path / "a" / "file").write_text("x")
    assert require_folder(tmp_path, "A") == tmp_path / "a"
    with pytest.raises(DatasetError, match="expected the folder 'a/file'") as error:
        require_folder(tmp_path, "a", "file")
    assert str(tmp_path) in str(error.value)
