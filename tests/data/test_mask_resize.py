"""The mask resizing rule (``preprocess.mask_resize``): one set of choices from the schema
to the command line, and the value reaching the preprocess job and its cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from support.workflow import REPO, load_tiny_config, snakemake, write_config
from test_preprocess import speckled_case

from lesionsoup.cli import main
from lesionsoup.data.cache import Cache
from lesionsoup.data.manifest import manifest_from_rows, write_manifest
from lesionsoup.data.mask_resize import MASK_RESIZE_RULES, check_mask_resize
from lesionsoup.data.preprocess import MaskRules, preprocess_image

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_schema_offers_the_rules_with_the_library_default():
    setting = yaml.safe_load(SCHEMA.read_text())["properties"]["preprocess"]["properties"]
    assert tuple(setting["mask_resize"]["enum"]) == MASK_RESIZE_RULES
    assert setting["mask_resize"]["default"] == MaskRules().resize == MASK_RESIZE_RULES[0]
    assert MASK_RESIZE_RULES == ("preserve", "nearest")


def test_check_names_the_rules():
    assert [check_mask_resize(rule) for rule in MASK_RESIZE_RULES] == list(MASK_RESIZE_RULES)
    with pytest.raises(ValueError, match=r"\('preserve', 'nearest'\), got 'NEAREST'"):
        check_mask_resize("NEAREST")


@pytest.mark.parametrize("rule", [None, "preserve", "nearest"])
def test_command_line_rule_reaches_the_cache(tmp_path: Path, rule: str | None) -> None:
    row = speckled_case(tmp_path, "cli", 300, 400, seed=1)
    manifest = tmp_path / "manifest.csv"
    cells = {key: "" if isinstance(value, float) else value for key, value in row.items()}
    write_manifest(manifest_from_rows([cells | {"mask_roi": ""}], "test"), manifest)
    chosen = [] if rule is None else ["--mask-resize", rule]
    out = tmp_path / "cache"
    assert main(["preprocess", str(manifest), "-o", str(out), "--size", "96", *chosen]) == 0
    expected = rule or "preserve"
    cache = Cache(out)
    assert cache.settings["rules"]["resize"] == expected
    labels = {
        name: preprocess_image(row, 96, MaskRules(resize=name)).labels for name in MASK_RESIZE_RULES
    }
    assert not np.array_equal(labels["preserve"], labels["nearest"])
    assert np.array_equal(np.asarray(cache.labels("cli")), labels[expected])


@pytest.mark.parametrize("rule", [None, "nearest"])
def test_workflow_passes_the_configured_rule_to_every_preprocess_job(tmp_path, rule):
    config = load_tiny_config()
    config["preprocess"].pop("mask_resize", None)
    if rule is not None:
        config["preprocess"]["mask_resize"] = rule
    result = snakemake(
        tmp_path, write_config(tmp_path / "config.yaml", config), "--dry-run", "--printshellcmds"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = (result.stdout + result.stderr).splitlines()
    commands = [line for line in output if "lesionsoup preprocess " in line]
    assert len(commands) == len(config["datasets"])
    assert all(f"--mask-resize {rule or 'preserve'} " in command for command in commands)
