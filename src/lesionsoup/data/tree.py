"""The fingerprint of a dataset's native tree, so that the workflow sees every change to it.

A tree's fingerprint is the SHA-256 of the relative path, size and modification
time (ns) of every file under its root, found by an ``os.scandir`` walk that
follows links and opens no file: an archive (``A. Segmentation.zip``) counts by
its own size and time, never by its members, and a root that is itself a file
by its own. Editing, adding, removing or renaming a photograph or mask changes
it; reading the tree does not.

A dataset's stamp file (``core.paths.TREE_STAMP``) records the fingerprints of
its roots (``ROOT_OPTIONS``). When the workflow is read, ``refresh_stamp``
rewrites it only when they differ from what it records, so that its
modification time is that of the tree's last change and the index rule, which
takes it as input, reruns exactly then. A root that does not exist yet (the
demo's, before `synth` writes it and its stamp) leaves the stamp alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lesionsoup.core.atomic import atomic_write_json

#: The config options of a dataset that name a folder it is read from.
ROOT_OPTIONS = ("root", "messidor_root")


def dataset_roots(settings: Mapping[str, Any]) -> list[str]:
    """The folders a dataset's config entry reads: its root, and e.g. MAPLES' ``messidor_root``."""
    return [str(settings[key]) for key in ROOT_OPTIONS if settings.get(key) is not None]


def _files(folder: str, prefix: str) -> Iterator[tuple[str, int, int]]:
    """(relative path, size, mtime in ns) of every file under ``folder``, links followed."""
    with os.scandir(folder) as entries:
        for entry in entries:
            name = prefix + entry.name
            if entry.is_dir():
                yield from _files(entry.path, name + "/")
            elif entry.is_file():
                stat = entry.stat()
                yield name, stat.st_size, stat.st_mtime_ns


def tree_fingerprint(root: Path | str) -> dict[str, Any]:
    """The number of files under ``root`` and the SHA-256 of their paths, sizes and times."""
    root = os.fspath(root)
    if os.path.isdir(root):
        files = sorted(_files(root, ""))
    else:
        stat = os.stat(root)  # a missing root raises FileNotFoundError naming it
        files = [("", stat.st_size, stat.st_mtime_ns)]
    hasher = hashlib.sha256()
    for name, size, mtime in files:
        hasher.update(f"{name}\0{size}\0{mtime}\n".encode())
    return {"files": len(files), "sha256": hasher.hexdigest()}


def stamp_contents(roots: Sequence[str]) -> dict[str, Any]:
    """What a stamp of ``roots`` records: each root's fingerprint, by its path."""
    return {"roots": {root: tree_fingerprint(root) for root in roots}}


def write_stamp(stamp: Path | str, contents: Mapping[str, Any]) -> None:
    """Write a stamp's ``contents`` (``stamp_contents``), its folder created if missing."""
    Path(stamp).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(stamp), contents)


def refresh_stamp(stamp: Path | str, roots: Sequence[str]) -> bool:
    """Rewrite ``stamp`` when its roots' fingerprints changed; True when it was written.

    Nothing is written while a root is missing: the index job that needs it then
    fails naming the root, or `synth` is still to write it.
    """
    if not all(os.path.exists(root) for root in roots):
        return False
    contents = stamp_contents(roots)
    try:
        if json.loads(Path(stamp).read_text()) == contents:
            return False
    except (OSError, ValueError):
        pass  # no stamp yet, or an unreadable one: write it
    write_stamp(stamp, contents)
    return True
