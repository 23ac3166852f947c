"""Node-local staging of caches (``data.staging``, ``--stage-caches``): copies read equal to the
originals, damaged copies are staged again, copies go at the end, and a command gives the same
result with and without staging."""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_SETTINGS, TINY_SPEC
from safetensors.numpy import load_file

from lesionsoup.cli import main
from lesionsoup.data.cache import Cache
from lesionsoup.data.staging import StagingError, damage, staged_caches, staging_folder


def assert_reads_equal(staged: Cache, original: Cache) -> None:
    """Every image, label plane, lesion-location array and geometry, and the fingerprint."""
    assert staged.directory != original.directory
    assert staged.fingerprint == original.fingerprint
    assert staged.ids == original.ids and len(original.ids) > 0
    for image_id in original.ids:
        np.testing.assert_array_equal(staged.image(image_id), original.image(image_id))
        np.testing.assert_array_equal(staged.labels(image_id), original.labels(image_id))
        theirs, ours = original.lesion_pixels(image_id), staged.lesion_pixels(image_id)
        assert ours.keys() == theirs.keys() and ours
        for lesion, pixels in theirs.items():
            np.testing.assert_array_equal(ours[lesion], pixels)
        assert staged.geometry(image_id) == original.geometry(image_id)


def copied(caplog: pytest.LogCaptureFixture) -> int:
    """How many caches were copied (the log line of each copy)."""
    return sum(record.getMessage().startswith("staged ") for record in caplog.records)


def copies(stage: Path) -> list[Path]:
    """The staged copies (and partial copies) left in the staging folder."""
    return sorted(path for path in stage.glob("lesionsoup-*") if path.is_dir())


def test_staged_caches_read_equal_to_the_originals_and_go_at_the_end(toy_caches, tmp_path):
    stage = tmp_path / "scratch"
    with staged_caches(list(toy_caches.values()), stage) as staged:
        assert staged.keys() == toy_caches.keys()
        for name, directory in toy_caches.items():
            assert staged[name].directory.is_relative_to(stage)
            assert staged[name].directory.name == name  # datasets are named by their folders
            assert_reads_equal(staged[name], Cache(directory))
        assert len(copies(stage)) == len(toy_caches)
    assert copies(stage) == []


def test_without_a_staging_folder_the_caches_are_read_in_place(toy_caches):
    with staged_caches(list(toy_caches.values()), "") as opened:
        assert {name: cache.directory for name, cache in opened.items()} == toy_caches


def test_copies_are_removed_when_the_body_raises(toy_caches, tmp_path):
    stage = tmp_path / "scratch"
    failing = pytest.raises(RuntimeError, match="the job failed")
    with failing, staged_caches(list(toy_caches.values()), stage) as staged:
        assert all(cache.directory.exists() for cache in staged.values())
        raise RuntimeError("the job failed")
    assert copies(stage) == []


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGES = {
    "image byte": lambda copy, image_id: flip_last_byte(copy / "images" / f"{image_id}.npy"),
    "label byte": lambda copy, image_id: flip_last_byte(copy / "labels" / f"{image_id}.npy"),
    "location byte": lambda copy, image_id: flip_last_byte(copy / "locations" / f"{image_id}.npz"),
    "record byte": lambda copy, image_id: flip_last_byte(copy / "records" / f"{image_id}.json"),
    "missing image": lambda copy, image_id: (copy / "images" / f"{image_id}.npy").unlink(),
    "missing content": lambda copy, image_id: (copy / "content.json").unlink(),
}


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_staged_copy_is_detected_and_staged_again(toy_caches, tmp_path, caplog, kind):
    original = toy_caches["AAA"]
    stage = tmp_path / "scratch"
    with staged_caches([original], stage) as first:  # another job on the node, still reading
        copy = first["AAA"].directory
        image_id = Cache(original).ids[-1]
        DAMAGES[kind](copy, image_id)
        assert damage(copy, original) is not None
        logged = caplog.at_level(logging.INFO, logger="lesionsoup")
        with logged, staged_caches([original], stage) as second:
            assert second["AAA"].directory == copy
            assert damage(copy, original) is None
            assert_reads_equal(second["AAA"], Cache(original))
        assert "is damaged" in caplog.text and copied(caplog) == 1
        assert copy.exists()  # the first job still reads it
        assert_reads_equal(Cache(copy), Cache(original))
    assert copies(stage) == []


def test_an_intact_copy_of_another_job_is_checked_and_shared(toy_caches, tmp_path, caplog):
    original = toy_caches["BBB"]
    stage = tmp_path / "scratch"
    with staged_caches([original], stage) as first:
        logged = caplog.at_level(logging.INFO, logger="lesionsoup")
        with logged, staged_caches([original], stage) as second:
            assert second["BBB"].directory == first["BBB"].directory
        assert "using the staged copy" in caplog.text and copied(caplog) == 0
        assert "left for the other jobs" in caplog.text
        assert_reads_equal(first["BBB"], Cache(original))
    assert copies(stage) == []


def test_a_killed_jobs_leftovers_are_checked_or_cleared(toy_caches, tmp_path):
    original = toy_caches["AAA"]
    stage = tmp_path / "scratch"
    with staged_caches([original], stage) as staged:
        copy = staged["AAA"].directory
        leftover = copy.parent.with_name(copy.parent.name + ".partial-1")
        shutil.copytree(copy.parent, tmp_path / "kept")
    shutil.copytree(tmp_path / "kept", copy.parent)  # a killed job's copy, and its partial one
    shutil.copytree(tmp_path / "kept", leftover)
    (copy / "index.csv").write_text("image_id\n")
    with staged_caches([original], stage) as staged:
        assert_reads_equal(staged["AAA"], Cache(original))
        assert not leftover.exists()
    assert copies(stage) == []


def test_a_copy_that_differs_from_the_original_is_an_error(toy_caches, tmp_path, monkeypatch):
    copytree = shutil.copytree

    def torn_copy(source: Path, target: Path, *args: object) -> Path:
        copytree(source, target, *args)  # copytree calls itself for each folder
        if (Path(target) / "labels").is_dir():
            flip_last_byte(next((Path(target) / "labels").glob("*.npy")))
        return target

    monkeypatch.setattr("lesionsoup.data.staging.shutil.copytree", torn_copy)
    stage = tmp_path / "scratch"
    refused = pytest.raises(StagingError, match="differs right after copying")
    with refused, staged_caches([toy_caches["AAA"]], stage):
        pass
    assert copies(stage) == []


def test_the_staging_folder_expands_variables_and_home_when_the_job_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("NODE_SCRATCH", str(tmp_path / "node"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert staging_folder("$NODE_SCRATCH/stage") == tmp_path / "node" / "stage"
    assert staging_folder("~/stage") == tmp_path / "home" / "stage"
    monkeypatch.delenv("NODE_SCRATCH")
    with pytest.raises(StagingError, match="not set"):
        staging_folder("$NODE_SCRATCH/stage")


def read_all_staged(args: tuple[Path, Path]) -> str:
    """A job of the concurrency test: stage, read every array against the original, hold the
    copy a moment; its error as text (a pool cannot always send an exception back)."""
    original, stage = args
    try:
        with staged_caches([original], stage) as staged:
            assert_reads_equal(staged[original.name], Cache(original))
            time.sleep(0.1)
            assert_reads_equal(staged[original.name], Cache(original))
            return staged[original.name].fingerprint
    except Exception as error:  # noqa: BLE001 - reported by the test
        return repr(error)


def test_jobs_staging_one_cache_at_once_each_read_it_whole(toy_caches, tmp_path):
    stage = tmp_path / "scratch"
    jobs = [(toy_caches["AAA"], stage)] * 6
    with multiprocessing.get_context("fork").Pool(3) as pool:
        fingerprints = pool.map_async(read_all_staged, jobs).get(timeout=120)
    assert fingerprints == [Cache(toy_caches["AAA"]).fingerprint] * len(jobs)
    assert copies(stage) == []


RUNS = ("plain", "staged")


def untimed(sidecar: Path) -> dict:
    """A checkpoint's sidecar without its timings (wall and device seconds)."""
    return {k: v for k, v in json.loads(sidecar.read_text()).items() if not k.endswith("seconds")}


def train(output: Path, caches: dict[str, Path], *extra: str) -> int:
    cache_options = [option for path in caches.values() for option in ("--cache", str(path))]
    settings = json.dumps(TINY_SETTINGS.as_dict())
    model = json.dumps(TINY_SPEC.as_dict())
    return main(
        ["train", "-o", str(output), *cache_options, "--model", model, "--settings", settings]
        + ["--threads", "1", "--workers", "0", "--device", "cpu", "--log-every", "4", *extra]
    )


def test_train_with_staged_caches_gives_the_same_run(toy_caches, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NODE_SCRATCH", str(tmp_path / "node"))
    assert train(tmp_path / "plain", toy_caches) == 0
    with caplog.at_level(logging.INFO, logger="lesionsoup"):
        assert train(tmp_path / "staged", toy_caches, "--stage-caches", "$NODE_SCRATCH/s") == 0
    assert copied(caplog) == len(toy_caches)
    assert caplog.text.count(f"to {tmp_path / 'node' / 's'}") == len(toy_caches)
    assert copies(tmp_path / "node" / "s") == []
    for name in ("best", "last"):
        plain = load_file(tmp_path / "plain" / f"{name}.safetensors")
        staged = load_file(tmp_path / "staged" / f"{name}.safetensors")
        assert plain.keys() == staged.keys()
        for key, weights in plain.items():
            np.testing.assert_array_equal(staged[key], weights)
        plain_sidecar, staged_sidecar = (untimed(tmp_path / run / f"{name}.json") for run in RUNS)
        assert staged_sidecar == plain_sidecar and "fingerprint" in plain_sidecar
    validations = [(tmp_path / run / "validation.csv").read_text() for run in RUNS]
    assert validations[0] == validations[1]
