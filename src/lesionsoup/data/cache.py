"""The preprocessed store of one dataset: written once, read one patch at a time.

Layout of a cache folder::

    images/<image_id>.npy     uint8 (size, size, 3) RGB
    labels/<image_id>.npy     uint8 (size, size) label plane, bits from ``lesions``
    locations/<image_id>.npz  int32 flat indices of the pixels of each lesion class
    records/<image_id>.json   geometry record, split, per-class pixel counts
    index.csv                 one row per image: the records, gathered
    cache.json                the settings the cache was built with
    content.json              ``data_sha256``: the digest of the index and the arrays

Arrays are plain ``.npy`` files opened memory-mapped, so a 512 x 512 patch is a
strided read of about 1 MB, never a decode of the whole image. A cache is built
in ``<dir>.partial`` and renamed into place when complete; an interrupted
build resumes from the images already written there (an image counts as
written once its record exists, and the record is written last) when the
leftovers' fingerprint (the settings, which include the manifest's digest)
matches, and starts over otherwise. Each image's arrays are hashed as they
are written (the digest kept in its record); publishing combines these and
the index into ``data_sha256``. A cache's own fingerprint, the digest of its
settings and ``data_sha256``, identifies its contents to the runs trained on it
and to every store of results computed from it: a redrawn mask changes it even
where the manifest (paths, sizes) does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lesionsoup.core.atomic import atomic_path, atomic_write_bytes, atomic_write_json
from lesionsoup.core.fingerprint import digest, fingerprint, open_state_folder
from lesionsoup.core.lesions import ALL, Lesion
from lesionsoup.data.geometry import Geometry

#: Memory maps a reader keeps open (two per image: image and labels).
OPEN_MAPS = 512
#: Version of the records a build in progress writes; raising it restarts older builds.
RECORD_FORMAT = 2
CONTENT = "content.json"


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def _atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


@dataclass(frozen=True)
class CacheEntry:
    """One preprocessed image, as the writer receives it."""

    image_id: str
    split: str
    image: np.ndarray  # uint8 (S, S, 3)
    labels: np.ndarray  # uint8 (S, S)
    geometry: Geometry


def lesion_locations(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Flat indices (int32) of the pixels of each lesion class present in ``labels``.

    One pass over the plane finds the pixels of any lesion (a few percent of it);
    each class's are picked among those.
    """
    flat = labels.reshape(-1)
    where = np.flatnonzero(flat & np.uint8(sum(lesion.bit for lesion in ALL)))
    bits = flat[where]
    present = int(np.bitwise_or.reduce(bits)) if bits.size else 0
    return {
        lesion.value: where[(bits & lesion.bit) != 0].astype(np.int32)
        for lesion in ALL
        if present & lesion.bit
    }


def array_digest(image: np.ndarray, labels: np.ndarray) -> str:
    """The digest of one image's arrays that its record keeps (``sha256``)."""
    hasher = hashlib.sha256(image.tobytes())
    hasher.update(labels.tobytes())
    return hasher.hexdigest()


def content_digest(index: bytes, arrays: list[tuple[str, str]]) -> str:
    """``data_sha256``: the digest of the index's bytes and each image's (id, array digest),
    in the index's order."""
    return digest({"index": hashlib.sha256(index).hexdigest(), "arrays": arrays})


def read_record(directory: Path, image_id: str) -> dict[str, Any]:
    """The record an image's writing left in a cache folder (with its arrays' ``sha256``)."""
    return json.loads((Path(directory) / "records" / f"{image_id}.json").read_text())


class CacheWriter:
    """Builds a cache folder in ``<dir>.partial`` and publishes it atomically."""

    def __init__(self, directory: Path, settings: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.partial = self.directory.with_name(self.directory.name + ".partial")
        self.settings = settings
        open_state_folder(self.partial, fingerprint(cache=settings, records=RECORD_FORMAT))
        for sub in ("images", "labels", "locations", "records"):
            (self.partial / sub).mkdir(exist_ok=True)
        atomic_write_json(self.partial / "cache.json", settings)

    def done(self) -> set[str]:
        """Ids already written by an earlier, interrupted build."""
        return {path.stem for path in (self.partial / "records").glob("*.json")}

    def write(self, entry: CacheEntry) -> None:
        size = entry.geometry.size
        if entry.image.shape != (size, size, 3) or entry.image.dtype != np.uint8:
            raise ValueError(f"{entry.image_id}: image must be uint8 ({size}, {size}, 3)")
        if entry.labels.shape != (size, size) or entry.labels.dtype != np.uint8:
            raise ValueError(f"{entry.image_id}: labels must be uint8 ({size}, {size})")
        _atomic_save_npy(self.partial / "images" / f"{entry.image_id}.npy", entry.image)
        _atomic_save_npy(self.partial / "labels" / f"{entry.image_id}.npy", entry.labels)
        locations = lesion_locations(entry.labels)
        _atomic_save_npz(self.partial / "locations" / f"{entry.image_id}.npz", locations)
        record = {
            "sha256": array_digest(entry.image, entry.labels),
            "image_id": entry.image_id,
            "split": entry.split,
            **entry.geometry.as_dict(),
            **{f"px_{lesion.value}": int(len(locations.get(lesion.value, ()))) for lesion in ALL},
        }
        atomic_write_bytes(
            self.partial / "records" / f"{entry.image_id}.json", json.dumps(record).encode()
        )

    def publish(self, image_ids: Iterable[str]) -> None:
        """Write the index in the given order and move the finished cache into place."""
        image_ids = list(image_ids)
        if not image_ids:
            raise ValueError(f"{self.directory}: no image could be cached; nothing to publish")
        records = []
        for image_id in image_ids:
            records.append(read_record(self.partial, image_id))
        arrays = [(record["image_id"], record.pop("sha256")) for record in records]
        index = pd.DataFrame.from_records(records).to_csv(index=False).encode()
        atomic_write_bytes(self.partial / "index.csv", index)
        atomic_write_json(self.partial / CONTENT, {"data_sha256": content_digest(index, arrays)})
        if self.directory.exists():
            shutil.rmtree(self.directory)
        os.replace(self.partial, self.directory)


class CorruptCache(ValueError):
    """A cache file that cannot be read; the message names it and how to rebuild."""

    def __init__(self, path: Path, error: Exception) -> None:
        super().__init__(
            f"{path}: unreadable cache file ({type(error).__name__}: {error}); "
            f"delete {path.parent.parent} to rebuild the cache"
        )


class Cache:
    """Read access to a published cache folder."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        index_file = self.directory / "index.csv"
        if not index_file.exists():
            raise FileNotFoundError(f"{self.directory}: not a lesionsoup cache (no index.csv)")
        settings_file = self.directory / "cache.json"
        try:
            self.index = pd.read_csv(index_file, dtype={"image_id": str, "split": str})
            self.settings: dict[str, Any] = json.loads(settings_file.read_text())
            self.size = int(self.settings["size"])
            content = json.loads((self.directory / CONTENT).read_text())
            self.data_sha256 = str(content["data_sha256"])
        except (ValueError, KeyError, OSError, pd.errors.ParserError) as error:
            raise ValueError(
                f"{self.directory}: damaged cache ({error}); delete the folder to rebuild it"
            ) from error
        self._maps: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    @property
    def fingerprint(self) -> str:
        """The identity of the cache's content: its settings and its data's digest."""
        return digest({"settings": self.settings, "data_sha256": self.data_sha256})

    def __getstate__(self) -> dict[str, Any]:
        # memory maps are reopened in each process (e.g. DataLoader workers)
        return {**self.__dict__, "_maps": OrderedDict()}

    def _map(self, kind: str, image_id: str) -> np.ndarray:
        """The memory map of an array, kept open for the most recently used images."""
        key = (kind, image_id)
        if key in self._maps:
            self._maps.move_to_end(key)
            return self._maps[key]
        path = self.directory / kind / f"{image_id}.npy"
        try:
            array = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as error:
            raise CorruptCache(path, error) from error
        self._maps[key] = array
        if len(self._maps) > OPEN_MAPS:
            self._maps.popitem(last=False)
        return array

    @property
    def ids(self) -> list[str]:
        return list(self.index["image_id"])

    def ids_in(self, split: str) -> list[str]:
        return list(self.index.loc[self.index["split"] == split, "image_id"])

    def image(self, image_id: str) -> np.ndarray:
        """The cached RGB image, memory-mapped (S, S, 3) uint8."""
        return self._map("images", image_id)

    def labels(self, image_id: str) -> np.ndarray:
        """The label plane, memory-mapped (S, S) uint8."""
        return self._map("labels", image_id)

    def patch(self, image_id: str, top: int, left: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """An image patch and its labels, copied out of the memory maps."""
        if not (0 <= top <= self.size - size and 0 <= left <= self.size - size):
            raise ValueError(f"{self.directory}: patch {top},{left}+{size} outside {self.size}")
        window = np.s_[top : top + size, left : left + size]
        return np.array(self.image(image_id)[window]), np.array(self.labels(image_id)[window])

    def lesion_pixels(self, image_id: str) -> dict[Lesion, np.ndarray]:
        """Flat pixel indices of each lesion class present in the image."""
        path = self.directory / "locations" / f"{image_id}.npz"
        try:
            with np.load(path) as data:
                return {Lesion(name): data[name] for name in data.files}
        except (ValueError, OSError, zipfile.BadZipFile) as error:
            raise CorruptCache(path, error) from error

    def geometry(self, image_id: str) -> Geometry:
        row = self.index.loc[self.index["image_id"] == image_id].iloc[0]
        return Geometry(**{name: int(row[name]) for name in Geometry.__dataclass_fields__})
