"""Who may read what lesionsoup writes (``results.mode``, ``--permissions``): a process umask.

Patient photographs and their predictions should not be world-readable, yet a
cluster's usual umask (022) makes every new file so. A mode narrows the umask
of the process at its start; every file and folder it and its children create
then follows it, whoever creates them (Snakemake's folders and ``> {log}``
redirections, the jobs, NumPy's memory-mapped caches, ``core/atomic.py``). A
mode only ever takes permissions away from the user's own umask.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

#: Each mode's umask bits, added to the user's: ``group`` lets the group read, ``private``
#: only the owner, ``umask`` keeps the user's umask as it is. The schema's enum and the
#: command line's choices are these names.
MODES: dict[str, int] = {"group": 0o027, "private": 0o077, "umask": 0o000}
DEFAULT_MODE = "group"


def current_umask() -> int:
    """The process umask, read from ``/proc`` where it can be.

    Elsewhere reading it means setting it for an instant, during which another
    thread's new file would get every permission.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def restrict(mode: str) -> int:
    """Narrow the process umask to ``mode`` (never widen it); the umask now in force."""
    if mode not in MODES:
        raise ValueError(f"permissions mode {mode!r} is none of {sorted(MODES)}")
    umask = current_umask() | MODES[mode]
    os.umask(umask)
    return umask


def narrow_folders(folders: Iterable[str | Path]) -> list[str]:
    """Take from each existing folder the permissions the process umask forbids.

    Files written under an earlier, wider mode keep their bits, but nobody the
    umask excludes can enter the folder to reach them. Returns one line per
    folder that was wider: narrowed, or why it could not be.
    """
    umask = current_umask()
    lines = []
    for folder in map(Path, folders):
        if not folder.is_dir() or not (mode := folder.stat().st_mode & 0o777) & umask:
            continue
        try:
            os.chmod(folder, mode & ~umask)
        except OSError as error:
            lines.append(f"{folder} stays {mode:04o}, wider than the umask {umask:04o}: {error}")
        else:
            lines.append(f"{folder}: {mode:04o} -> {mode & ~umask:04o} (umask {umask:04o})")
    return lines
