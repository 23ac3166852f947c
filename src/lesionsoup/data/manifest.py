"""The manifest: one CSV per dataset listing every image, its split and its masks.

Columns, in order, are ``COLUMNS``. Paths are absolute. A mask cell is empty
(the dataset has no file for that lesion: no lesion), one path, or several
paths joined by ``|`` whose union is the mask (e.g. RETLES haemorrhages).
``mask_roi`` is empty unless the masks are drawn on a region of interest
rather than on the whole photograph (MAPLES-DR's ``AdditionalData.zip``: 1500 x
1500 maps of a square box): it then holds that box, ``"x0 y0 x1 y1"`` in
photograph pixels (``x1``, ``y1`` exclusive), and ``lesionsoup.data.roi``
places the masks into the photograph's frame. ``width`` and ``height`` are the
native image size in pixels. ``split`` is one of ``SPLITS``: ``train``,
``valid``, ``test``, or ``unused`` (training images a ``train_fraction`` below 1
leaves out; ``lesionsoup.data.splits``), which no cache holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from lesionsoup.core.atomic import atomic_write_bytes
from lesionsoup.core.lesions import ALL, Lesion
from lesionsoup.data.splits import SPLITS  # the split names: train, valid, test, unused

MASK_SEPARATOR = "|"
#: The column holding a region of interest the mask files are drawn on.
ROI_COLUMN = "mask_roi"


def mask_column(lesion: Lesion) -> str:
    return f"mask_{lesion.value}"


MASK_COLUMNS: tuple[str, ...] = tuple(mask_column(lesion) for lesion in ALL)
COLUMNS: tuple[str, ...] = (
    "image_id",
    "dataset",
    "split",
    "patient",
    "image_path",
    *MASK_COLUMNS,
    ROI_COLUMN,
    "width",
    "height",
)
_TEXT_COLUMNS = COLUMNS[:-2]
_SIZE_COLUMNS = ("width", "height")


class ManifestError(ValueError):
    """A manifest that breaks the contract; the message names its source."""


def join_mask_paths(paths: Iterable[Path | str]) -> str:
    """The mask cell for the union of ``paths`` (empty string for none)."""
    texts = [str(path) for path in paths]
    for text in texts:
        if MASK_SEPARATOR in text:
            raise ValueError(f"{text}: a mask path may not contain '{MASK_SEPARATOR}'")
    return MASK_SEPARATOR.join(texts)


def split_mask_paths(cell: str) -> list[Path]:
    """The mask files of a mask cell; an empty list means no lesion."""
    return [Path(text) for text in cell.split(MASK_SEPARATOR)] if cell else []


def format_roi(x0: int, y0: int, x1: int, y1: int) -> str:
    """The ``mask_roi`` cell of the box from (x0, y0) to (x1, y1), exclusive."""
    return f"{x0} {y0} {x1} {y1}"


def parse_roi(cell: str) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of a ``mask_roi`` cell, None when empty; ValueError when malformed.

    The box may reach past the photograph's edges (a square around a fundus that
    the camera cut at the top and bottom), but it may not be empty.
    """
    if not cell:
        return None
    parts = cell.split()
    if len(parts) != 4 or not all(part.lstrip("-").isdigit() for part in parts):
        raise ValueError(f"region of interest {cell!r} is not four integers 'x0 y0 x1 y1'")
    x0, y0, x1, y1 = (int(part) for part in parts)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"region of interest {cell!r} is empty (needs x0 < x1 and y0 < y1)")
    return x0, y0, x1, y1


def _roi_problem(frame: pd.DataFrame) -> str | None:
    """What is wrong with the first bad ``mask_roi`` cell, or None."""
    for row, (cell, width, height) in enumerate(
        zip(frame[ROI_COLUMN], frame["width"], frame["height"], strict=True)
    ):
        try:
            box = parse_roi(cell)
        except ValueError as error:
            return f"row {row}: {error}"
        if box is not None and (box[2] <= 0 or box[3] <= 0 or box[0] >= width or box[1] >= height):
            return f"row {row}: region of interest {cell!r} misses the {width}x{height} image"
    return None


def validate_manifest(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Check ``frame`` against the contract; ``source`` names it in errors. Returns it."""

    def fail(problem: str) -> ManifestError:
        return ManifestError(f"{source}: {problem}")

    if tuple(frame.columns) != COLUMNS:
        raise fail(f"columns must be {list(COLUMNS)}, found {list(frame.columns)}")
    for column in _TEXT_COLUMNS:
        if not all(isinstance(value, str) for value in frame[column]):
            raise fail(f"column '{column}' must hold text only (empty string for none)")
    for column in _SIZE_COLUMNS:
        if not pd.api.types.is_integer_dtype(frame[column]) or (frame[column] <= 0).any():
            raise fail(f"column '{column}' must hold positive integers")
    for column in ("image_id", "dataset", "patient", "image_path"):
        if (frame[column] == "").any():
            row = int((frame[column] == "").to_numpy().argmax())
            raise fail(f"row {row}: column '{column}' is empty")
    bad_ids = [i for i in frame["image_id"] if "/" in i or "\\" in i or i.startswith(".")]
    if bad_ids:
        raise fail(f"image id {bad_ids[0]!r} is not usable as a file name")
    if (problem := _roi_problem(frame)) is not None:
        raise fail(problem)
    unknown_splits = sorted(set(frame["split"]) - set(SPLITS))
    if unknown_splits:
        raise fail(f"unknown split {unknown_splits}; allowed: {list(SPLITS)}")
    for column in ("image_path", *MASK_COLUMNS):
        for cell in frame[column]:
            if not all(path.is_absolute() for path in split_mask_paths(cell)):
                raise fail(f"column '{column}' holds a path that is not absolute: {cell!r}")
    duplicated = frame.duplicated(["dataset", "image_id"], keep=False)
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        twins = frame[
            (frame["dataset"] == first["dataset"]) & (frame["image_id"] == first["image_id"])
        ]
        raise fail(
            f"image id {first['image_id']!r} repeats in {first['dataset']}: "
            + " and ".join(twins["image_path"])
        )
    return frame


def write_manifest(frame: pd.DataFrame, path: Path) -> None:
    """Validate and write ``frame`` as CSV through a temporary file and a rename."""
    path = Path(path)
    validate_manifest(frame, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, frame.to_csv(index=False).encode())


def read_manifest(path: Path) -> pd.DataFrame:
    """A manifest from its CSV file, validated; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: not a readable CSV file ({error})") from error
    if tuple(frame.columns) != COLUMNS:
        raise ManifestError(f"{path}: columns must be {list(COLUMNS)}, found {list(frame.columns)}")
    for column in _SIZE_COLUMNS:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if numbers.isna().any() or (numbers % 1 != 0).any():
            raise ManifestError(f"{path}: column '{column}' must hold positive integers")
        frame[column] = numbers.astype("int64")
    return validate_manifest(frame, str(path))


def manifest_from_rows(rows: list[dict[str, object]], source: str) -> pd.DataFrame:
    """A validated manifest frame from row dicts keyed by ``COLUMNS``.

    A row without ``mask_roi`` gets an empty one: only datasets whose masks are
    drawn on a region of interest have anything to say there.
    """
    rows = [{ROI_COLUMN: "", **row} for row in rows]
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    frame = frame.astype({column: "int64" for column in _SIZE_COLUMNS})
    return validate_manifest(frame, source)
