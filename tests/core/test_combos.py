import re

import pytest
from support import REPO

from lesionsoup.core.combos import COMBO, DATASET_NAME, combo_name, expand_combinations

WORKFLOW = REPO / "workflow"

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


def test_names_may_hold_digits_but_not_start_with_them():
    assert DATASET_NAME.fullmatch("EOPHTHA2") and not DATASET_NAME.fullmatch("2DDR")
    assert not DATASET_NAME.fullmatch("idrid")
    assert expand_combinations(["IDRID+EOPHTHA2"], ["EOPHTHA2", "IDRID"]) == ["EOPHTHA2+IDRID"]
    assert (
        COMBO.fullmatch("DDR+EOPHTHA2")
        and not COMBO.fullmatch("DDR+")
        and not COMBO.fullmatch("ddr")
    )


def test_workflow_patterns_spell_out_the_combination_name():
    """The ``combo`` wildcard and every combination pattern of the schemas are ``COMBO``,
    and every dataset-name pattern is ``DATASET_NAME``."""
    rules = (WORKFLOW / "rules" / "common.smk").read_text()
    assert re.search(r'^\s*combo=r"(.*)",$', rules, re.MULTILINE).group(1) == COMBO.pattern
    schemas = "".join(path.read_text() for path in sorted((WORKFLOW / "schemas").glob("*.yaml")))
    written = [
        pattern.replace("\\\\", "\\")
        for pattern in re.findall(r'pattern: "(\^(?:\(singles\|all\|)?\[A-Z\][^"]*)"', schemas)
    ]
    assert len(written) == 7
    assert set(written) == {
        f"^(singles|all|{COMBO.pattern})$",
        f"^{COMBO.pattern}$",
        f"^{DATASET_NAME.pattern}$",
    }
