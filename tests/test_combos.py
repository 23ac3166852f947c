import pytest

from lesionsoup.core.combos import combo_name, expand_combinations

DATASETS = ["DDR", "FGADR", "IDRID", "MAPLES", "RETLES"]


def test_all_is_every_non_empty_subset():
    names = expand_combinations("all", DATASETS)
    assert len(names) == 31 == len(set(names))
    assert "DDR+FGADR+IDRID+MAPLES+RETLES" in names


def test_names_are_sorted_and_deduplicated():
    assert combo_name(["IDRID", "DDR", "IDRID"]) == "DDR+IDRID"
    assert expand_combinations(["IDRID+DDR", "singles", "DDR"], DATASETS) == [
        "DDR+IDRID",
        *DATASETS,
    ]


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="FOO"):
        expand_combinations(["DDR+FOO"], DATASETS)
