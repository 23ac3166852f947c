import random
from collections import Counter

import pytest

from lesionsoup.data.splits import SplitOptions, assign_splits, seeded_split, unit_draw

FRACTIONS = {"test": 0.3, "valid": 0.15}


def ids(count: int, prefix: str = "img") -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(count)]


def split_of(patients: list[str], seed: int = 0, fractions=FRACTIONS) -> dict[str, str]:
    return dict(zip(patients, seeded_split(patients, "FGADR", seed, fractions), strict=True))


def test_draw_is_a_stable_unit_number():
    draw = unit_draw(3, "FGADR", "0001_2")
    assert 0 <= draw < 1
    assert draw == unit_draw(3, "FGADR", "0001_2")
    assert len({draw, unit_draw(4, "FGADR", "0001_2"), unit_draw(3, "RETLES", "0001_2")}) == 3


def test_fractions_are_honoured_on_many_ids():
    counts = Counter(split_of(ids(1000)).values())
    assert counts["test"] / 1000 == pytest.approx(0.3, abs=0.05)
    assert counts["valid"] / 1000 == pytest.approx(0.15, abs=0.04)
    assert counts["train"] / 1000 == pytest.approx(0.55, abs=0.05)


def test_adding_and_removing_images_moves_no_other_image():
    before = split_of(ids(300))
    grown = split_of(ids(300) + ids(100, "new"))
    shrunk = split_of(ids(300)[::2])
    assert {key: grown[key] for key in before} == before
    assert shrunk == {key: before[key] for key in shrunk}


def test_input_order_does_not_matter():
    patients = ids(200)
    shuffled = patients.copy()
    random.Random(1).shuffle(shuffled)
    assert split_of(shuffled) == split_of(patients)


def test_seed_and_fractions_change_the_split():
    base = split_of(ids(200))
    assert split_of(ids(200), seed=1) != base
    assert split_of(ids(200), fractions={"test": 0.2, "valid": 0.15}) != base


def test_entries_of_one_patient_share_a_part():
    patients = [f"p{i}" for i in range(100) for _ in range(2)]
    parts = seeded_split(patients, "RETLES", 0, FRACTIONS)
    by_patient: dict[str, set[str]] = {}
    for patient, part in zip(patients, parts, strict=True):
        by_patient.setdefault(patient, set()).add(part)
    assert all(len(found) == 1 for found in by_patient.values())
    assert set(parts) == {"train", "valid", "test"}


@pytest.mark.parametrize("count", [3, 4, 5])
def test_tiny_datasets_fill_every_part(count):
    for seed in range(20):
        parts = seeded_split(ids(count), "FGADR", seed, FRACTIONS)
        assert set(parts) == {"train", "valid", "test"}
        assert parts == seeded_split(ids(count), "FGADR", seed, FRACTIONS)


def test_too_few_patients_and_zero_fractions_leave_parts_empty():
    assert seeded_split(["only"], "FGADR", 0, FRACTIONS) == ["train"]
    assert set(seeded_split(ids(50), "FGADR", 0, {"test": 0.3, "valid": 0.0})) == {"train", "test"}


def test_valid_is_carved_from_train_only():
    official = ["train"] * 40 + ["test"] * 20
    patients = ids(60)
    splits = assign_splits(official, patients, "IDRID", SplitOptions(valid=0.3))
    assert splits[40:] == ["test"] * 20
    assert 0 < splits.count("valid") < 40
    assert set(splits[:40]) == {"train", "valid"}


def test_two_train_images_give_one_valid_image():
    for seed in range(10):
        splits = assign_splits(
            ["train", "train", "test"], ["a", "b", "c"], "IDRID", SplitOptions(seed)
        )
        assert sorted(splits) == ["test", "train", "valid"]


def test_official_valid_is_kept_as_is():
    official = ["train", "valid", "test", "train"]
    assert assign_splits(official, ids(4), "DDR", SplitOptions()) == official


def test_no_official_split_uses_test_and_valid_fractions():
    options = SplitOptions(seed=2, test=0.4, valid=0.1)
    splits = assign_splits([None] * 100, ids(100), "FGADR", options)
    assert splits == seeded_split(ids(100), "FGADR", 2, {"test": 0.4, "valid": 0.1})


def test_mixed_official_splits_are_refused():
    with pytest.raises(ValueError, match="some images have an official split"):
        assign_splits(["train", None], ["a", "b"], "IDRID", SplitOptions())


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"sed": 1}, "unknown split option"),
        (0.3, "option 'split' must be a mapping"),
        ({"seed": "1"}, "'seed' must be an integer"),
        ({"test": 1.2}, "'test' must be in"),
        ({"valid": -0.1}, "'valid' must be in"),
        ({"test": 0.6, "valid": 0.4}, "leave room for train"),
    ],
)
def test_bad_split_options(options, problem):
    with pytest.raises(ValueError, match=problem):
        SplitOptions.from_mapping(options)
