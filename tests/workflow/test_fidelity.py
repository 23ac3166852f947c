"""docs/fidelity.md and the study configs say the same: every setting, its value, its source."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from support import REPO

LEDGER = REPO / "docs" / "fidelity.md"
CONFIGS = {"config/paper.yaml": "paper", "config/fissionfusion.yaml": "fissionfusion"}
BOTH = "Both configs"
#: A citation: a reference of the ledger's table, then a file (and lines) in backticks.
CITATION = re.compile(r"^(MS|FDT|NNT|FF) `[^`]+`")
KINDS = ("deviation:", "runtime:")


def leaves(config: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every setting; an empty mapping is a value of its own."""
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, dotted + ".")
        else:
            yield dotted, value


def lookup(config: dict, dotted: str) -> Any:
    """The value at ``dotted``; KeyError when the config does not set it. Soup and pair names
    hold dots of their own nowhere, so splitting on dots is exact."""
    for key in dotted.split("."):
        if not isinstance(config, dict) or key not in config:
            raise KeyError(dotted)
        config = config[key]
    return config


def ledger_sections() -> dict[str, list[tuple[str, Any, str]]]:
    """The rows (setting, value, source) under each ``## `` heading of the ledger."""
    sections: dict[str, list[tuple[str, Any, str]]] = {}
    heading = None
    for line in LEDGER.read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            sections[heading] = []
            continue
        row = re.match(r"^\| `([^`]+)` \| `(.*)` \| (.+) \|$", line)
        if heading is not None and row:
            setting, value, source = row.groups()
            sections[heading].append((setting, yaml.safe_load(value), source))
    return sections


def ledger_of(config_path: str) -> list[tuple[str, Any, str]]:
    sections = ledger_sections()
    return sections[BOTH] + sections[config_path]


def mismatches(config: dict, rows: list[tuple[str, Any, str]]) -> list[str]:
    """The rows whose value is not the config's (or that name a setting it does not have)."""
    wrong = []
    for setting, value, _ in rows:
        try:
            if lookup(config, setting) != value:
                wrong.append(setting)
        except KeyError:
            wrong.append(setting)
    return wrong


def uncovered(config: dict, rows: list[tuple[str, Any, str]]) -> list[str]:
    """The config's settings that no row covers (itself or a mapping holding it)."""
    settings = [setting for setting, _, _ in rows]
    return [
        key
        for key, _ in leaves(config)
        if not any(key == setting or key.startswith(setting + ".") for setting in settings)
    ]


@pytest.mark.parametrize("config_path", CONFIGS)
def test_every_setting_has_its_value_and_a_source_in_the_ledger(config_path):
    config = yaml.safe_load((REPO / config_path).read_text())
    rows = ledger_of(config_path)
    settings = [setting for setting, _, _ in rows]
    assert len(settings) == len(set(settings)), f"{config_path}: a setting has two rows"
    assert not mismatches(config, rows), f"{config_path}: values differ"
    assert not uncovered(config, rows), f"{config_path}: settings without a ledger row"
    for setting, _, source in rows:
        assert CITATION.match(source) or source.startswith(KINDS), f"{setting}: {source!r}"


def test_the_shared_rows_hold_for_both_configs_and_the_ledger_has_no_other_section():
    assert set(ledger_sections()) == {BOTH, *CONFIGS}
    configs = [yaml.safe_load((REPO / path).read_text()) for path in CONFIGS]
    for setting, _, _ in ledger_sections()[BOTH]:
        first, second = (lookup(config, setting) for config in configs)
        assert first == second, setting


def test_a_changed_value_or_a_new_setting_is_caught():
    """The checks above can fail: a config that differs from its ledger by one value, or by
    one setting, is reported."""
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    rows = ledger_of("config/paper.yaml")
    config["training"]["defaults"]["batch_size"] = 64
    assert mismatches(config, rows) == ["training.defaults.batch_size"]
    config["training"]["defaults"]["grad_clip_norm"] = 1.0
    assert uncovered(config, rows) == ["training.defaults.grad_clip_norm"]
    del config["training"]["defaults"]["dice_smooth"]
    assert "training.defaults.dice_smooth" in mismatches(config, rows)
