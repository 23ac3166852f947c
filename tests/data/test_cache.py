import hashlib
import json

import numpy as np
import pytest
from conftest import write_toy_cache

from lesionsoup.core.fingerprint import digest
from lesionsoup.core.lesions import Lesion
from lesionsoup.data.cache import Cache, CacheEntry, CacheWriter
from lesionsoup.data.geometry import Geometry


def test_patch_matches_whole_image_and_locations_match_labels(tmp_path):
    cache = Cache(write_toy_cache(tmp_path / "c", "AAA", size=64))
    image_id = cache.ids[0]
    image, labels = cache.patch(image_id, 10, 20, 16)
    np.testing.assert_array_equal(image, cache.image(image_id)[10:26, 20:36])
    np.testing.assert_array_equal(labels, cache.labels(image_id)[10:26, 20:36])
    for lesion, flat in cache.lesion_pixels(image_id).items():
        plane = np.asarray(cache.labels(image_id)).reshape(-1)
        np.testing.assert_array_equal(flat, np.flatnonzero(plane & lesion.bit))
    assert cache.geometry(image_id).size == 64
    assert set(cache.ids_in("valid")) == {"AAA_valid_0", "AAA_valid_1"}


def test_interrupted_build_resumes_and_publish_is_atomic(tmp_path):
    out = tmp_path / "cache"
    geometry = Geometry.fit(8, 8, (0, 0, 8, 8), 8)
    entry = CacheEntry(
        "a", "train", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), geometry
    )
    writer = CacheWriter(out, {"size": 8})
    writer.write(entry)
    assert not out.exists()  # nothing published before the end
    again = CacheWriter(out, {"size": 8})
    assert again.done() == {"a"}
    other_settings = CacheWriter(out, {"size": 16})
    assert other_settings.done() == set()  # leftovers of other settings are discarded
    other_settings.write(
        CacheEntry(
            "b",
            "test",
            np.zeros((16, 16, 3), np.uint8),
            np.zeros((16, 16), np.uint8),
            Geometry.fit(16, 16, (0, 0, 16, 16), 16),
        )
    )
    other_settings.publish(["b"])
    assert Cache(out).ids == ["b"] and not out.with_name("cache.partial").exists()


def test_writer_rejects_wrong_shapes(tmp_path):
    writer = CacheWriter(tmp_path / "c", {"size": 8})
    geometry = Geometry.fit(8, 8, (0, 0, 8, 8), 8)
    with pytest.raises(ValueError, match="bad"):
        writer.write(
            CacheEntry(
                "bad", "train", np.zeros((8, 9, 3), np.uint8), np.zeros((8, 8), np.uint8), geometry
            )
        )


def test_not_a_cache_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        Cache(tmp_path)


def test_lesion_pixels_only_lists_present_classes(tmp_path):
    cache = Cache(write_toy_cache(tmp_path / "c", "AAA", size=64))
    present = cache.lesion_pixels(cache.ids[0])
    assert all(isinstance(lesion, Lesion) and len(flat) > 0 for lesion, flat in present.items())


def _entry(image_id: str, label: int) -> CacheEntry:
    labels = np.zeros((8, 8), np.uint8)
    labels[2, 3] = label
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    return CacheEntry(image_id, "test", image, labels, Geometry.fit(8, 8, (0, 0, 8, 8), 8))


def _built(directory, labels: dict[str, int], interrupt_after: int | None = None) -> Cache:
    writer = CacheWriter(directory, {"size": 8})
    for number, (image_id, label) in enumerate(labels.items()):
        if number == interrupt_after:
            writer = CacheWriter(directory, {"size": 8})  # a restart resumes the rest
        writer.write(_entry(image_id, label))
    writer.publish(labels)
    return Cache(directory)


def test_the_fingerprint_covers_the_arrays_not_only_the_settings(tmp_path):
    old = _built(tmp_path / "old", {"a": 1, "b": 0})
    fixed = _built(tmp_path / "fixed", {"a": 1, "b": 4})  # one label pixel redrawn
    resumed = _built(tmp_path / "resumed", {"a": 1, "b": 4}, interrupt_after=1)
    assert old.settings == fixed.settings and old.fingerprint != fixed.fingerprint
    assert resumed.fingerprint == fixed.fingerprint
    # the digest, by hand: each image's arrays, then the index's bytes
    arrays = [
        [image_id, hashlib.sha256(entry.image.tobytes() + entry.labels.tobytes()).hexdigest()]
        for image_id, entry in (("a", _entry("a", 1)), ("b", _entry("b", 4)))
    ]
    index = hashlib.sha256((tmp_path / "fixed" / "index.csv").read_bytes()).hexdigest()
    expected = digest({"index": index, "arrays": arrays})
    assert json.loads((tmp_path / "fixed" / "content.json").read_text()) == {
        "data_sha256": expected
    }


def test_a_cache_without_its_content_digest_is_named_as_damaged(tmp_path):
    directory = write_toy_cache(tmp_path / "c", "AAA", size=16)
    (directory / "content.json").unlink()
    with pytest.raises(ValueError, match=f"{directory}: damaged cache .*content.json"):
        Cache(directory)
