"""Node-local copies of the caches a job reads (``cluster.stage_caches``).

On a cluster the caches sit on a shared filesystem, and a training job reads
random patches of them for hours; many sites ask such jobs to copy their
inputs to node-local scratch first. ``staged_caches(directories, stage)``
copies each cache into ``stage`` (environment variables and ``~`` expanded
when the job runs, on its node), checks the copy against the original, opens
it, and removes it when the block ends, also on an error.

Layout in the staging folder, per cache (``KEY`` digests the cache's
fingerprint and its folder name, so two different caches never share a name)::

    lesionsoup-KEY/<name>/        the copy; its folder keeps the cache's name
    lesionsoup-KEY.lock           held (flock, exclusive) while staging or removing
    lesionsoup-KEY.readers        held (flock, shared) by every job reading the copy
    lesionsoup-KEY.partial-PID    a copy being made, renamed to lesionsoup-KEY when checked

Jobs on one node share one copy of a cache: a node running four trainings of
one combination holds its caches once, and the jobs after the first start
without copying. Sharing needs a reference count that a killed job cannot
leave wrong, hence two ``fcntl.flock`` locks that the kernel releases when
their holder dies: a job stages (or checks the copy it finds) under the
exclusive ``.lock``, takes a shared lock on ``.readers`` before releasing it,
and at the end, under ``.lock`` again, removes the copy only if no other job
holds ``.readers``. A job that finds no copy, a leftover of a killed job, or a
damaged copy, under ``.lock``, copies the cache again; a damaged copy is
replaced by a rename once the new one is checked, so a job reading it goes on
reading. The lock files stay (deleting a lock file another job has opened
would let two jobs hold it); they are empty. A killed job's copy stays until
the next job of that cache on the node ends, or until the site clears scratch.

A copy is checked against the original, never trusted: the same files of the
same sizes, the small ones (settings, records, index, ``content.json``, lesion
locations) byte for byte, each image's arrays against the digest its record
keeps, and ``data_sha256`` recomputed from the copied index and arrays
(``cache.array_digest``, ``cache.content_digest``). Checking reads the copy
once and the original's small files once.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from lesionsoup.core.fingerprint import digest
from lesionsoup.data.cache import (
    Cache,
    array_digest,
    content_digest,
    read_record,
)

log = logging.getLogger("lesionsoup")

#: The files of a cache compared byte for byte: settings, records, index and lesion locations
#: (small); the image and label arrays are digested.
SMALL_SUFFIXES = (".json", ".csv", ".npz")


class StagingError(RuntimeError):
    """A cache could not be staged; the message names the cache and the staging folder."""


def staging_folder(stage: str | Path) -> Path:
    """``stage`` with ``~`` and environment variables expanded (on the node that runs the job)."""
    expanded = os.path.expandvars(os.path.expanduser(str(stage)))
    if "$" in expanded:
        raise StagingError(f"staging folder {stage!r}: an environment variable is not set")
    return Path(expanded).absolute()


def _files(directory: Path) -> set[str]:
    return {str(path.relative_to(directory)) for path in directory.rglob("*") if not path.is_dir()}


def _file_damage(copy: Path, original: Path) -> str | None:
    """Why the copy's files differ from the original's (names, sizes, the small ones' bytes)."""
    files, copied = _files(original), _files(copy)
    if files != copied:
        missing, extra = sorted(files - copied), sorted(copied - files)
        return f"files missing {missing[:3]}, extra {extra[:3]}"
    for name in sorted(files):
        if (copy / name).stat().st_size != (original / name).stat().st_size:
            return f"{name} differs in size"
    small = sorted(name for name in files if name.endswith(SMALL_SUFFIXES))
    changed = [n for n in small if (copy / n).read_bytes() != (original / n).read_bytes()]
    if changed:
        return f"{changed[0]} differs" + (f" (and {len(changed) - 1} more)" if changed[1:] else "")
    return None


def damage(copy: Path, original: Path) -> str | None:
    """Why the copy ``copy`` of the cache ``original`` differs from it, or None if it is equal."""
    if not copy.is_dir():
        return "no copy"
    why = _file_damage(copy, original)
    if why is not None:
        return why
    try:
        cache = Cache(copy)
        arrays = []
        for image_id in cache.ids:
            image = np.load(copy / "images" / f"{image_id}.npy", mmap_mode="r")
            labels = np.load(copy / "labels" / f"{image_id}.npy", mmap_mode="r")
            arrays.append((image_id, array_digest(image, labels)))
            if arrays[-1][1] != read_record(copy, image_id)["sha256"]:
                return f"the arrays of {image_id} differ from their digest"
    except (OSError, ValueError, KeyError, EOFError) as error:
        return f"unreadable ({type(error).__name__}: {error})"
    if content_digest((copy / "index.csv").read_bytes(), arrays) != cache.data_sha256:
        return "data_sha256 differs"
    return None


def _copy(original: Path, stage: Path, key: str) -> None:
    """Copy ``original`` to ``stage/key`` through a checked partial copy; log the time."""
    for leftover in stage.glob(f"{key}.partial-*"):  # a killed job's (we hold the lock)
        shutil.rmtree(leftover, ignore_errors=True)
    partial = stage / f"{key}.partial-{os.getpid()}"
    started = time.perf_counter()
    shutil.copytree(original, partial / original.name)
    why = damage(partial / original.name, original)
    if why is not None:
        shutil.rmtree(partial, ignore_errors=True)
        raise StagingError(f"{original}: its copy in {stage} differs right after copying ({why})")
    folder, trash = stage / key, stage / f"{key}.partial-{os.getpid()}-old"
    if folder.exists():  # a damaged copy: replaced by one rename, readers keep their files
        os.replace(folder, trash)
    os.replace(partial, folder)
    shutil.rmtree(trash, ignore_errors=True)
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    seconds = time.perf_counter() - started
    log.info("staged %s to %s: %.1f MB in %.2f s", original, folder, size / 1e6, seconds)


def _stage(original: Path, stage: Path, key: str) -> None:
    """Make ``stage/key/<name>`` an intact copy of ``original`` (the caller holds the lock)."""
    copy = stage / key / original.name
    if (stage / key).exists():
        why = damage(copy, original)
        if why is None:
            log.info("%s: using the staged copy %s (checked)", original, copy)
            return
        log.warning("%s: the staged copy %s is damaged (%s); staging it again", original, copy, why)
    _copy(original, stage, key)


@contextmanager
def _locked(handle: IO[str]) -> Iterator[None]:
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


def _release(stage: Path, key: str, lock: IO[str], readers: IO[str]) -> None:
    """Stop reading the copy (release the shared reader lock); remove it if no other job
    reads it."""
    with _locked(lock):
        fcntl.flock(readers, fcntl.LOCK_UN)
        try:
            fcntl.flock(readers, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s: left for the other jobs reading it", stage / key)
            return
        try:
            shutil.rmtree(stage / key, ignore_errors=True)
            log.info("removed the staged copy %s", stage / key)
        finally:
            fcntl.flock(readers, fcntl.LOCK_UN)


def stage_key(cache: Cache, name: str) -> str:
    """The name of a cache's copy: unique to its content (fingerprint) and folder name."""
    return f"lesionsoup-{digest({'fingerprint': cache.fingerprint, 'name': name})[:24]}"


@contextmanager
def staged_cache(original: Path, stage: Path) -> Iterator[Cache]:
    """The cache ``original``, opened on its checked copy in ``stage`` while in the block."""
    original = Path(original).absolute()
    stage.mkdir(parents=True, exist_ok=True)
    key = stage_key(Cache(original), original.name)
    with open(stage / f"{key}.lock", "a") as lock, open(stage / f"{key}.readers", "a") as readers:
        with _locked(lock):
            _stage(original, stage, key)
            fcntl.flock(readers, fcntl.LOCK_SH)
        try:
            yield Cache(stage / key / original.name)
        finally:
            _release(stage, key, lock, readers)


@contextmanager
def staged_caches(
    directories: Sequence[Path], stage: str | Path | None = None
) -> Iterator[dict[str, Cache]]:
    """Dataset name (the folder's name) -> ``Cache``: opened on checked copies in ``stage``
    (``~`` and environment variables expanded now), removed at the end; without ``stage``, on
    the caches themselves."""
    if stage is None or str(stage) == "":
        yield {Path(directory).name: Cache(directory) for directory in directories}
        return
    folder = staging_folder(stage)
    with ExitStack() as stack:
        yield {
            Path(directory).name: stack.enter_context(staged_cache(Path(directory), folder))
            for directory in directories
        }
