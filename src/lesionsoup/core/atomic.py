"""Files that appear whole or not at all: written under a temporary name, then renamed.

A kill at any instant leaves the old file or the new one, never a torn one.
Published files get the permissions the process umask asks for, never wider
(``core/permissions.py`` narrows it to ``results.mode``): safetensors alone
creates its files 0600, which a collaborator on shared cluster storage cannot read.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lesionsoup.core.permissions import current_umask

if TYPE_CHECKING:
    import pandas as pd


def _file_mode() -> int:
    """0666 less the process umask: what ``open()`` would have given the file."""
    return 0o666 & ~current_umask()


def temporary_name(path: Path) -> Path:
    """A hidden name next to ``path``, unique to this process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


class WriteError(OSError):
    """A file that could not be written (a full disk, a quota, no permission); the message
    names the file's final path, and no partial file is left under that name."""


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, else it is removed.

    An ``OSError`` while writing becomes a ``WriteError`` naming ``path``: "No space left
    on device" alone does not say which of a job's files it was writing.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as error:
        failure = WriteError(f"{path}: cannot be written ({error})")
        failure.errno = error.errno
        raise failure from error
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_copy(source: Path, path: Path) -> None:
    """A copy of ``source`` at ``path``, whole or not at all."""
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)


def atomic_write_json(path: Path, value: Any) -> None:
    """Indented, key-sorted JSON with a final newline."""
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """Write a table atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, table.to_csv(index=False).encode())
