"""The permissions of each mode and the paths that lack them (tests/core/test_permissions.py)."""

from __future__ import annotations

import stat
from pathlib import Path

#: (file, folder) permissions of each mode under the tests' umask 022.
EXPECTED = {"group": (0o640, 0o750), "private": (0o600, 0o700), "umask": (0o644, 0o755)}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wrong_modes(root: Path, file_mode: int, folder_mode: int) -> dict[str, str]:
    """Every path at or under ``root`` whose permissions are not its kind's, with them."""
    paths = [root, *root.rglob("*")]
    expected = {path: folder_mode if path.is_dir() else file_mode for path in paths}
    return {str(p): f"{mode_of(p):04o}" for p in paths if mode_of(p) != expected[p]}
