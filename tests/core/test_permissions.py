"""results.mode: the umask every file and folder is written under (core/permissions.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from support import REPO
from support.permissions import EXPECTED, mode_of

from lesionsoup.core import paths, permissions
from lesionsoup.core.atomic import atomic_path, atomic_write_json


def write_every_kind(folder: Path) -> list[Path]:
    """A folder, a plain file, a memory-mapped .npy, an atomic JSON and an atomic safetensors
    (which safetensors itself creates 0600)."""
    folder.mkdir()
    (folder / "plain.txt").write_text("x")
    np.lib.format.open_memmap(folder / "image.npy", mode="w+", dtype=np.uint8, shape=(4,)).flush()
    atomic_write_json(folder / "sidecar.json", {"a": 1})
    with atomic_path(folder / "weights.safetensors") as tmp:
        save_file({"w": torch.zeros(2)}, tmp)
    return sorted(folder.iterdir())


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_each_mode_gives_every_file_and_folder_its_permissions(tmp_path, mode):
    permissions.restrict(mode)
    files = write_every_kind(tmp_path / "out")
    file_mode, folder_mode = EXPECTED[mode]
    assert mode_of(tmp_path / "out") == folder_mode
    assert {path.name: mode_of(path) for path in files} == {path.name: file_mode for path in files}


def test_a_mode_narrows_the_users_umask_never_widens_it():
    assert permissions.restrict("group") == 0o027 == permissions.current_umask()
    os.umask(0o077)  # a stricter user
    assert permissions.restrict("group") == 0o077
    os.umask(0o002)  # group-writable by habit: the group still only reads
    assert permissions.restrict("group") == 0o027
    assert permissions.restrict("umask") == 0o027  # `umask` keeps what is in force
    with pytest.raises(ValueError, match="'public' is none of"):
        permissions.restrict("public")


def test_atomic_files_never_get_more_than_the_umask_allows(tmp_path):
    os.umask(0o077)
    assert mode_of(write_every_kind(tmp_path / "out")[-1]) == 0o600  # weights.safetensors


def test_current_umask_is_read_without_changing_it(monkeypatch):
    os.umask(0o037)
    assert permissions.current_umask() == 0o037
    monkeypatch.setattr(Path, "read_text", lambda self: "")  # no /proc: the fallback
    assert permissions.current_umask() == 0o037
    assert os.umask(0o022) == 0o037


def test_folders_of_a_wider_earlier_mode_are_narrowed_their_files_kept(tmp_path):
    old = tmp_path / "results"
    old.mkdir(mode=0o755)
    (old / "image.npy").write_bytes(b"x")  # 0644 under umask 022
    (tmp_path / "logs").mkdir()
    os.chmod(tmp_path / "logs", 0o750)
    permissions.restrict("group")
    folders = [old, tmp_path / "logs", tmp_path / "missing"]
    assert permissions.narrow_folders(folders) == [f"{old}: 0755 -> 0750 (umask 0027)"]
    assert mode_of(old) == 0o750 and mode_of(old / "image.npy") == 0o644
    assert permissions.narrow_folders(folders) == []


def test_the_workflow_narrows_results_logs_and_the_generated_demo_data():
    config = {"synthetic": {"enabled": True, "out": "resources/synthetic"}}
    assert paths.written_folders(config) == ["results", "logs", "resources/synthetic"]
    config["synthetic"]["enabled"] = False
    assert paths.written_folders(config) == ["results", "logs"]


def test_the_schema_offers_the_modes_with_the_same_default():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    mode = schema["properties"]["results"]["properties"]["mode"]
    assert mode["enum"] == list(permissions.MODES) and mode["default"] == permissions.DEFAULT_MODE
