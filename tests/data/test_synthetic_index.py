"""The synthetic trees read back through the real adapters, as a user's download would."""

from __future__ import annotations

import pytest

from lesionsoup.data.datasets import index_dataset
from lesionsoup.data.synthetic.generator import generate


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), images=6, seed=3, scale=0.08)


@pytest.mark.parametrize(
    ("tree", "dataset"),
    [
        ("IDRID", "IDRID"),
        ("DDR", "DDR"),
        ("FGADR", "FGADR"),
        ("RETLES", "RETLES"),
        ("MAPLES", "MAPLES"),
        ("MAPLES-release", "MAPLES"),
    ],
)
def test_every_tree_indexes_with_all_splits_and_lesions(trees, tree, dataset):
    manifest = index_dataset(dataset, trees[tree], {})
    assert len(manifest) == 6
    assert set(manifest["split"]) == {"train", "valid", "test"}
    assert (manifest["dataset"] == dataset).all()
    for column in ("mask_EX", "mask_HE", "mask_MA"):
        assert (manifest[column] != "").any(), column
    assert (manifest["width"] > 0).all() and (manifest["height"] > 0).all()


def test_retles_haemorrhage_options(trees):
    union = index_dataset("RETLES", trees["RETLES"], {"hemorrhage": "union"})
    retinal = index_dataset("RETLES", trees["RETLES"], {"hemorrhage": "retinal"})
    assert union["mask_HE"].str.contains("preretinal").any()
    assert not retinal["mask_HE"].str.contains("preretinal").any()


def test_both_maples_layouts_give_the_same_images_and_splits(trees):
    export = index_dataset("MAPLES", trees["MAPLES"], {})
    release = index_dataset("MAPLES", trees["MAPLES-release"], {})
    assert list(export["image_id"]) == list(release["image_id"])
    assert list(export["split"]) == list(release["split"])
