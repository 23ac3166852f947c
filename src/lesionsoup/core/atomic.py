"""Files that appear whole or not at all: written under a temporary name, then renamed.

A kill at any instant leaves the old file or the new one, never a torn one.
Published files get the permissions the process umask asks for, never wider
(``core/permissions.py`` narrows it to ``results.mode``): safetensors alone
creates its files 0600, which a collaborator on shared cluster storage cannot read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lesionsoup.core.permissions import current_umask


def _file_mode() -> int:
    """0666 less the process umask: what ``open()`` would have given the file."""
    return 0o666 & ~current_umask()


def temporary_name(path: Path) -> Path:
    """A hidden name next to ``path``, unique to this process."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, else it is removed."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: Path, value: Any) -> None:
    """Indented, key-sorted JSON with a final newline."""
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())
