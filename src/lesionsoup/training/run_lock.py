"""One writer per run folder: an exclusive lock that the kernel releases when its holder dies.

Training, warm-up, continuation and HPO-trial jobs hold ``<run>/.lock``
(``fcntl.flock``) while they write their run folder, and write their process
id into it; a second process on the same folder stops at once with an error
naming the folder and the holder. The lock is taken again freely by its
holder (an HPO trial locks its run folder around ``train_run``, which locks
it too). The file stays when the lock is released: deleting a lock file that
another process has opened would let two processes hold "the" lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"

#: The run folders this process holds, with how many times each is held.
_held: dict[Path, int] = {}


class RunFolderBusy(OSError):
    """Another process is writing the run folder; the message names it and the holder."""


def _holder(fd: int) -> str:
    """The holder's process id as written in the lock file."""
    os.lseek(fd, 0, os.SEEK_SET)
    pid = os.read(fd, 64).decode(errors="replace").strip()
    return f"process {pid}" if pid else "a process that has not written its id yet"


def _acquire(folder: Path) -> int:
    """The locked lock file's descriptor, holding this process's id; raises if it is taken."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise RunFolderBusy(
            f"{folder} is being written by {holder} (lock {folder / LOCK_NAME}); this job "
            "stops: let that one finish, or stop it and rerun this one"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold the run folder ``folder`` (created if need be) for this process while in the block."""
    folder = Path(folder).absolute()
    fd = None if folder in _held else _acquire(folder)
    _held[folder] = _held.get(folder, 0) + 1
    try:
        yield
    finally:
        _held[folder] -= 1
        if fd is not None:
            del _held[folder]
            os.close(fd)
