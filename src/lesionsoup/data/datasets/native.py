"""What every adapter shares: the image record, the error type and tree lookups.

An adapter reads one dataset's native folder tree, exactly as users downloaded
it, into ``NativeImage`` records; ``lesionsoup.data.datasets.index_dataset`` turns
those into a manifest (the adapter record itself is in ``registry``). Folder
lookups here ignore case and skip hidden files (``.DS_Store``) and anything
that is not an image.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from lesionsoup.core.lesions import Lesion

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})


class DatasetError(ValueError):
    """A native dataset tree that cannot be indexed; the message names the path."""


@dataclass
class NativeImage:
    """One photograph of a dataset and the mask files of each lesion it has."""

    image_id: str
    image_path: Path
    split: str | None = None  # the official split, None where the dataset has none
    masks: dict[Lesion, list[Path]] = field(default_factory=dict)


def absolute(path: Path | str) -> Path:
    """An absolute, normalised path that keeps symbolic links as the user named them."""
    return Path(os.path.abspath(path))


def find_child(folder: Path, name: str) -> Path | None:
    """The entry of ``folder`` called ``name`` in any letter case, or None."""
    if not folder.is_dir():
        return None
    matches = [entry for entry in folder.iterdir() if entry.name.casefold() == name.casefold()]
    if len(matches) > 1:
        raise DatasetError(f"{folder}: several entries named '{name}' in different case")
    return matches[0] if matches else None


def find_path(root: Path, parts: Iterable[str]) -> Path | None:
    """``root / parts...`` found with ``find_child`` at each level, or None."""
    current: Path | None = root
    for part in parts:
        current = find_child(current, part) if current is not None else None
    return current


def require_folder(root: Path, *parts: str) -> Path:
    """The folder ``root / parts...`` (any case), or a DatasetError saying it was expected."""
    found = find_path(root, parts)
    if found is None or not found.is_dir():
        raise DatasetError(f"{root}: expected the folder '{'/'.join(parts)}' under it")
    return found


def existing_root(root: Path | str) -> Path:
    """``root`` made absolute, or a DatasetError when it is not a folder."""
    root = absolute(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found")
    return root


def locate_root(root: Path | str, marker: str) -> Path:
    """The ``marker`` folder, given either it or the folder that contains it."""
    root = existing_root(root)
    if root.name.casefold() == marker.casefold():
        return root
    found = find_child(root, marker)
    if found is None or not found.is_dir():
        raise DatasetError(f"{root}: expected the folder '{marker}' in it (or use it as the root)")
    return found


def subfolders(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name."""
    return sorted(
        (entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith(".")),
        key=lambda entry: entry.name,
    )


def image_files(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by stem; two images with one stem are an error."""
    images: dict[str, Path] = {}
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            path = Path(entry.path)
            if entry.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if not entry.is_file():
                continue
            if path.stem in images:
                raise DatasetError(f"two images for one id: {images[path.stem]} and {path}")
            images[path.stem] = path
    return images


def attach_mask(
    images: Mapping[str, NativeImage], image_id: str, lesion: Lesion, mask: Path
) -> None:
    """Record ``mask`` as (part of) the ``lesion`` mask of ``image_id``."""
    if image_id not in images:
        raise DatasetError(f"{mask}: mask file whose image id '{image_id}' has no image")
    images[image_id].masks.setdefault(lesion, []).append(mask)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read the image header ({error})") from error
