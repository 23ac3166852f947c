"""Snakemake's benchmark records: what a job with a ``benchmark:`` file measured of itself.

Snakemake writes one tab-separated row per run of the job (``--benchmark-repeats``), with at
least the columns ``s`` (wall-clock seconds), ``max_rss`` (peak resident memory, MB) and
``cpu_time`` (CPU seconds of the job's processes); ``NA`` where it could not sample them.
A record here is the mean over the rows.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobRecord:
    """A job's wall-clock seconds, CPU seconds and peak resident memory (MB), as measured."""

    seconds: float
    cpu_seconds: float | None
    max_rss_mb: float | None


def _column(rows: list[dict[str, str]], name: str, path: Path) -> float | None:
    values = [row.get(name) for row in rows]
    if any(value in (None, "", "NA", "-") for value in values):
        return None
    try:
        return statistics.fmean(float(value) for value in values)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"{path}: column {name!r} holds a value that is not a number") from None


def read_record(path: Path | str) -> JobRecord:
    """The mean record of a benchmark file; a clear error if it is not one."""
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: not a readable benchmark file ({error})") from None
    if not rows or "s" not in rows[0]:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no rows, or no column 's')")
    seconds = _column(rows, "s", path)
    if seconds is None:
        raise ValueError(f"{path}: a row has no wall-clock seconds ('s')")
    return JobRecord(seconds, _column(rows, "cpu_time", path), _column(rows, "max_rss", path))


def measured_seconds(path: Path | str | None) -> float | None:
    """Wall-clock seconds of the job recorded at ``path``; None where there is no record."""
    if path is None or not Path(path).is_file():
        return None
    return read_record(path).seconds
