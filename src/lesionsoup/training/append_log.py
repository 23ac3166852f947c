"""CSV logs that are appended to, never rewritten (a run's ``log.csv`` and ``validation.csv``).

Each row starts with its step. A run that resumes at step ``s`` cuts its logs
at the byte offset of their first row past ``s`` (or of a torn last line) by
one truncation, and appends from there: the rows kept are never written
again, so a kill at any instant loses at most the rows not yet flushed, which
the state saved after them never includes. The header is written with the
first row, from its keys.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO


def _cut_offset(path: Path, resume_step: int) -> tuple[int, list[str] | None]:
    """Where rows past ``resume_step`` (or a torn line) begin, and the header's fields."""
    if resume_step == 0 or not path.exists():
        return 0, None
    offset = 0
    with open(path, "rb") as handle:
        header = handle.readline()
        if not header.endswith(b"\n"):
            return 0, None
        fields = next(csv.reader([header.decode()]))
        if fields[0] != "step":
            raise ValueError(f"{path}: not a step log (its first column is {fields[0]!r})")
        offset = len(header)
        for line in handle:
            step = line.split(b",", 1)[0]
            if not line.endswith(b"\n") or not step.isdigit() or int(step) > resume_step:
                break
            offset += len(line)
    return offset, fields


class AppendLog:
    """A step-keyed CSV in a run's work folder, cut back to ``resume_step`` and appended to."""

    def __init__(self, path: Path, resume_step: int) -> None:
        self.path = path
        offset, self.fields = _cut_offset(path, resume_step)
        self.handle: TextIO = open(path, "a+", newline="")  # noqa: SIM115 (closed in close())
        self.handle.truncate(offset)
        self.writer = None if self.fields is None else csv.DictWriter(self.handle, self.fields)

    @property
    def empty(self) -> bool:
        """Whether it holds no row yet (nor a header)."""
        return self.writer is None

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append ``rows`` (buffered: ``flush`` makes them last)."""
        for row in rows:
            if self.writer is None:
                self.writer = csv.DictWriter(self.handle, list(row))
                self.writer.writeheader()
            self.writer.writerow(row)

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
