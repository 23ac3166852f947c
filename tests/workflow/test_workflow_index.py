"""The index rule under the config's ``preprocess.unrecognised``: a real Snakemake run on
an IDRiD tree with a folder no rule reads warns (the manifest is written) or stops
naming the folder (no manifest left behind)."""

from pathlib import Path

import pytest
from support.native_trees import idrid_tree, write_mask
from support.workflow import load_tiny_config, snakemake, write_config

PLAN = {
    "train": {f"IDRiD_{i:02d}": ("MA", "EX") for i in range(1, 5)},
    "test": {"IDRiD_05": ("MA",)},
}
MANIFEST = "results/data/IDRID/manifest.csv"


@pytest.mark.parametrize("policy", ["warn", "error"])
def test_unrecognised_policy_reaches_the_index_job(tmp_path: Path, policy: str) -> None:
    root = idrid_tree(tmp_path / "IDRiD", PLAN)
    stray = write_mask(
        root / "A. Segmentation/2. All Segmentation Groundtruths/a. Training Set"
        / "6. Blood Vessels" / "IDRiD_01_BV.tif"
    ).parent  # fmt: skip
    config = load_tiny_config()
    config["synthetic"]["enabled"] = False
    config["datasets"] = {"IDRID": {"root": str(root)}}
    config["training"]["combinations"] = ["IDRID"]
    config["preprocess"]["unrecognised"] = policy
    configfile = write_config(tmp_path / "config.yaml", config)
    result = snakemake(tmp_path / "work", configfile, "--cores", "1", MANIFEST)
    log = (tmp_path / "work/logs/index/IDRID.log").read_text()
    assert str(stray) in log
    manifest = tmp_path / "work" / MANIFEST
    if policy == "warn":
        assert result.returncode == 0, result.stderr
        assert "unrecognised entries, not read" in log and manifest.is_file()
    else:
        assert result.returncode != 0
        assert "1 unrecognised entries, not read" in log and not manifest.exists()
