"""Fingerprints: a state folder is kept only when it was made from the same inputs."""

from __future__ import annotations

import logging

from lesionsoup.core.fingerprint import (
    changed_keys,
    discard_if_stale,
    fingerprint,
    open_state_folder,
)


def test_changed_keys_name_each_differing_leaf():
    old = {"settings": {"lr": 0.1, "steps": 4}, "model": {"decoder": [16, 8]}, "init": "a"}
    new = {"settings": {"lr": 0.2, "steps": 4}, "model": {"decoder": [8, 8]}, "seed": 0}
    assert changed_keys(old, new) == ["init", "model.decoder", "seed", "settings.lr"]
    assert changed_keys(old, old) == []


def test_same_fingerprint_keeps_the_folder(tmp_path):
    folder = open_state_folder(tmp_path / "work", fingerprint(settings={"lr": 0.1}))
    (folder / "state").write_text("progress")
    open_state_folder(folder, fingerprint(settings={"lr": 0.1}))
    assert (folder / "state").read_text() == "progress"


def test_changed_fingerprint_discards_the_folder_naming_the_change(tmp_path, caplog):
    folder = open_state_folder(tmp_path / "work", fingerprint(settings={"lr": 0.1}))
    (folder / "state").write_text("progress")
    with caplog.at_level(logging.WARNING):
        open_state_folder(folder, fingerprint(settings={"lr": 0.2}))
    assert not (folder / "state").exists() and folder.is_dir()
    assert "settings.lr" in caplog.text and str(folder) in caplog.text


def test_folder_without_a_readable_fingerprint_is_stale(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "state").write_text("written by older code")
    assert discard_if_stale(folder, fingerprint(settings={}))
    assert not folder.exists()
    folder.mkdir()
    (folder / "fingerprint.json").write_text('{"torn')
    assert discard_if_stale(folder, fingerprint(settings={}))


def test_fingerprint_records_the_state_format():
    assert "state_format" in fingerprint(settings={})
