"""Output folders that appear complete or not at all, for the folders users receive.

An exported model folder and each photograph's prediction folder are built
under a hidden ``.<name>.partial`` next to their place and renamed into it
once complete, so an interrupted run never leaves a folder that looks whole.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def published_folder(final: Path) -> Iterator[Path]:
    """Yield an empty folder to fill; on success it replaces ``final`` (whatever was there),
    on error it is removed and ``final`` is left as it was."""
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
