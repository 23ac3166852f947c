"""An Optuna journal file that a torn write never makes unreadable.

Optuna appends one JSON record per line. A writer that dies or fills the
disk mid-record leaves a torn last line; Optuna's readers skip it, but the
next record is appended onto it and from then on every reader fails with a
JSON error that names no file. Here, under the journal's lock, the journal
is checked on opening and before every append: a torn or unreadable last
record is moved to ``<journal>.torn-<UTC time>`` next to it, logged, and cut
off, so every complete record is kept. A write that fails (a full disk) is
cut off again before the error, which names the journal, is raised. A damaged
record before the last one cannot be cut off without losing the records after
it: reading stops with an error naming the journal, the line and the remedy.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend

from lesionsoup.core.atomic import atomic_write_bytes

log = logging.getLogger(__name__)


class JournalDamaged(ConnectionError):
    """The journal cannot be read or written; the message names it and the remedy."""


def _last_line_start(handle: Any, end: int) -> int:
    """Where the line ending at byte ``end`` (exclusive) begins: after the newline before it."""
    window = 4096
    while True:
        start = max(0, end - window)
        handle.seek(start)
        newline = handle.read(end - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        if start == 0:
            return 0
        window *= 4


def damaged_tail(path: Path) -> int | None:
    """The offset where the journal's torn or unreadable last record begins, else None."""
    size = path.stat().st_size
    if size == 0:
        return None
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        if handle.read(1) != b"\n":
            return _last_line_start(handle, size)  # unterminated: no reader ever applied it
        start = _last_line_start(handle, size - 1)
        handle.seek(start)
        try:
            json.loads(handle.read(size - start))
        except ValueError:
            return start
    return None


def _first_damaged_line(path: Path) -> int:
    """The 1-based number of the journal's first line that is not a JSON record."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                json.loads(line)
            except ValueError:
                return number
    return 0


class RepairingJournalBackend(JournalFileBackend):
    """Optuna's journal file backend, with torn last records set aside under its lock."""

    def __init__(self, file_path: str) -> None:
        super().__init__(file_path)
        self.path = Path(file_path)
        with self._locked():
            self.repair()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def repair(self) -> Path | None:
        """Move a torn last record aside (call under the lock); the file it went to, if any."""
        start = damaged_tail(self.path)
        if start is None:
            return None
        with open(self.path, "rb") as handle:
            handle.seek(start)
            torn = handle.read()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        aside = self.path.with_name(f"{self.path.name}.torn-{stamp}")
        atomic_write_bytes(aside, torn)
        os.truncate(self.path, start)
        log.warning(
            "%s: its last record was torn (%d bytes, a write interrupted or a full disk); "
            "moved to %s, every complete record kept",
            *(self.path, len(torn), aside),
        )
        return aside

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        """Append ``logs`` whole, or leave the journal as it was and raise naming it."""
        data = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in logs)
        with self._locked():
            self.repair()
            end = self.path.stat().st_size
            try:
                write_records(self.path, data.encode())
            except OSError as error:
                os.truncate(self.path, end)
                raise JournalDamaged(
                    f"HPO journal {self.path}: a record could not be written ({error}); the "
                    "journal is left as it was: free space, then rerun the job"
                ) from error

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        try:
            yield from super().read_logs(log_number_from)
        except ValueError as error:  # json.JSONDecodeError, or Optuna's "Invalid log format."
            line = _first_damaged_line(self.path)
            raise JournalDamaged(
                f"HPO journal {self.path}: line {line} is not a complete record ({error}) and "
                "records follow it, so it cannot be cut off: delete that line (a torn record; "
                "a complete one written onto it may be split off onto its own line), or move "
                "the journal aside to start the study afresh"
            ) from error


def write_records(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` and wait for the disk (the one write a full disk can tear)."""
    with open(path, "ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
