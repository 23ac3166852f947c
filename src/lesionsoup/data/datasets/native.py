"""What every adapter shares: the image record, the error type and tree lookups.

An adapter reads one dataset's native folder tree, exactly as users downloaded
it, into ``NativeImage`` records; ``lesionsoup.data.datasets.index_dataset`` turns
those into a manifest (the adapter record itself is in ``registry``). Folder
lookups here ignore case and skip junk (hidden files, ``Thumbs.db``, ``__MACOSX``).

Two promises every adapter keeps with these helpers: ``locate_root`` finds the
dataset's top folder whether users pass it, the folder above it or an archive
extracted twice, and says which; and nothing is skipped in silence: entries no
rule reads become ``Unrecognised`` records that ``report_unrecognised`` names in
one warning (an error under ``lesionsoup index --unrecognised error``), and a
listed file that cannot be opened (a link to nothing: a git-annex or DVC file
not yet fetched) is named by ``drop_unreadable``, whose warning leaves its image
out of the manifest rather than indexing it lesion-free.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lesionsoup.core.lesions import Lesion
from lesionsoup.data import archives
from lesionsoup.data.archives import Folder

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
#: Entries that are never data (besides hidden ones): left out silently, never reported.
JUNK_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini"})
#: How ``locate_root`` describes the top folder it found at each depth below the root.
ROOT_LAYOUTS = (
    "the root is the folder as downloaded",
    "the root is the folder above it",
    "two levels below the root: an archive extracted twice",
)
#: What ``report_unrecognised`` does with entries no adapter rule reads: the choices of
#: ``lesionsoup index --unrecognised``, which the scan gets as this option.
UNRECOGNISED_OPTION = "unrecognised"
UNRECOGNISED_CHOICES = ("warn", "error")
#: How many unrecognised entries one message names before it counts the rest.
NAMED_AT_MOST = 20

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A native dataset tree that cannot be indexed; the message names the path."""


@dataclass
class NativeImage:
    """One photograph of a dataset and the mask files of each lesion it has."""

    image_id: str
    image_path: Path
    split: str | None = None  # the official split, None where the dataset has none
    masks: dict[Lesion, list[Path]] = field(default_factory=dict)
    roi: str = ""  # the manifest's mask_roi: the box the masks are drawn on, empty for none


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


def existing_root(root: Path | str) -> Folder:
    """``root`` made absolute, or a DatasetError when it is not a folder.

    A zip file is the folder its archive holds, read in place (``archives.ArchiveFolder``).
    """
    root = absolute(root)
    if archives.is_archive(root):
        log.info("%s: read in place from the zip archive", root)
        try:
            return archives.open_archive(root)
        except OSError as error:
            raise DatasetError(str(error)) from error
    if root.is_file():
        raise DatasetError(f"{root}: the dataset root is a file, not a folder or a .zip archive")
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found")
    return root


def locate_root(root: Path | str, dataset: str, holds: Sequence[str]) -> Folder:
    """The dataset's top folder: the one holding every path in ``holds`` (any case).

    Users pass the folder as downloaded, the folder above it, or an
    archive extracted twice (``A. Segmentation/A. Segmentation/...``), so the search
    looks at ``root``, then its sub-folders, then theirs, and stops at the first
    level with a match. Two matches on one level are an error rather than a guess;
    the log line says which layout was found, so a surprise is visible.
    """
    root = existing_root(root)
    level = [root]
    for depth, layout in enumerate(ROOT_LAYOUTS):
        found = [folder for folder in level if all(find_path(folder, p.split("/")) for p in holds)]
        if len(found) > 1:
            raise DatasetError(
                f"{root}: several {dataset} folders holding {list(holds)}: "
                f"{', '.join(map(str, found))}; pass one of them as the root"
            )
        if found:
            log.info("%s: %s (%s)", dataset, found[0], layout)
            return found[0]
        if depth < len(ROOT_LAYOUTS) - 1:
            level = [child for folder in level for child in subfolders(folder)]
    raise DatasetError(
        f"{root}: expected the {dataset} folder holding {', '.join(map(repr, holds))} "
        "as the root, in it, or one level further down"
    )


def is_junk(name: str) -> bool:
    """Files and folders operating systems and archivers leave behind, never data."""
    return name.startswith(".") or name.casefold() in JUNK_NAMES


def subfolders(folder: Path) -> list[Path]:
    """Visible sub-folders of ``folder``, sorted by name (junk such as ``__MACOSX`` left out)."""
    return sorted(
        (entry for entry in folder.iterdir() if entry.is_dir() and not is_junk(entry.name)),
        key=lambda entry: entry.name,
    )


def image_files(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` by stem; two images with one stem are an error."""
    images: dict[str, Path] = {}
    for path in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if is_junk(path.name) or path.suffix.lower() not in IMAGE_SUFFIXES or not listed_file(path):
            continue
        if path.stem in images:
            raise DatasetError(f"two images for one id: {images[path.stem]} and {path}")
        images[path.stem] = path
    return images


def listed_file(path: Folder) -> bool:
    """Whether ``path`` is a file or a symbolic link that is no folder: a link to nothing (a
    git-annex or DVC file not yet fetched) is listed, for ``drop_unreadable`` to report."""
    if isinstance(path, Path) and path.is_symlink():
        return not path.is_dir()
    return path.is_file()


def attach_mask(
    images: Mapping[str, NativeImage], image_id: str, lesion: Lesion, mask: Path
) -> None:
    """Record ``mask`` as (part of) the ``lesion`` mask of ``image_id``."""
    if image_id not in images:
        raise DatasetError(f"{mask}: mask file whose image id '{image_id}' has no image")
    images[image_id].masks.setdefault(lesion, []).append(mask)


def read_mask_folders(
    parent: Path,
    folders: Mapping[Lesion, str],
    images: Mapping[str, NativeImage],
    known: Iterable[str] = (),
    image_id: Callable[[str], str] = str,
) -> list[Unrecognised]:
    """Attach the masks in each lesion's folder under ``parent``; return what was not read.

    A lesion folder that is absent means no lesion for every image. Not read are
    the entries of ``parent`` that are neither a lesion folder nor ``known`` (an
    optic-disc folder, a grade table) and non-image files in the lesion folders.
    ``image_id`` maps a mask file's stem to its image's id (IDRiD's ``_MA`` suffix).
    """
    unrecognised = unknown_entries(parent, [*folders.values(), *known])
    for lesion, name in folders.items():
        folder = find_child(parent, name)
        if folder is None or not folder.is_dir():
            continue
        unrecognised += stray_files(folder)
        for stem, mask in image_files(folder).items():
            attach_mask(images, image_id(stem), lesion, mask)
    return unrecognised


@dataclass(frozen=True)
class Unrecognised:
    """A folder or file of a native tree that no rule of its adapter reads.

    ``names`` are the image ids whose masks it may hold (the stems of the images in an
    unrecognised folder, or the image folder an unknown mask file lies in): an image
    they name that got no mask at all lost its masks to a name the adapter does not
    know, which ``report_unrecognised`` refuses instead of indexing it lesion-free.
    """

    path: Path
    names: frozenset[str] = frozenset()


def unknown_entries(folder: Path, known: Iterable[str]) -> list[Unrecognised]:
    """Visible entries of ``folder`` whose names (any case) are none of ``known``."""
    known_names = {name.casefold() for name in known}
    return [
        Unrecognised(entry, _image_stems(entry))
        for entry in sorted(folder.iterdir())
        if not is_junk(entry.name) and entry.name.casefold() not in known_names
    ]


def stray_files(folder: Path) -> list[Unrecognised]:
    """Visible entries of an image or mask folder that are not image files."""
    return [
        Unrecognised(entry, _image_stems(entry))
        for entry in sorted(folder.iterdir())
        if not is_junk(entry.name)
        and (entry.is_dir() or entry.suffix.lower() not in IMAGE_SUFFIXES)
    ]


def _image_stems(entry: Path) -> frozenset[str]:
    """Stems of the image files in ``entry`` (a folder) or of ``entry`` itself."""
    if not entry.is_dir():
        return frozenset({entry.stem})
    return frozenset(
        child.stem
        for child in entry.iterdir()
        if not is_junk(child.name) and child.suffix.lower() in IMAGE_SUFFIXES
    )


def report_unrecognised(
    dataset: str, entries: Iterable[Unrecognised], images: Iterable[NativeImage], policy: str
) -> None:
    """Name the entries of a tree that were not read: one warning, or an error under "error".

    A folder skipped in silence is how an export with other folder names once indexed
    every image as lesion-free, so an image without any mask whose id an unrecognised
    entry names is an error under either policy.
    """
    if policy not in UNRECOGNISED_CHOICES:
        raise ValueError(
            f"unrecognised entries: policy {policy!r} is none of {UNRECOGNISED_CHOICES}"
        )
    entries = sorted(entries, key=lambda entry: entry.path)
    if not entries:
        return
    listing = _listing([str(entry.path) for entry in entries])
    named = {prefix for entry in entries for name in entry.names for prefix in _id_prefixes(name)}
    orphans = sorted(
        image.image_id for image in images if not image.masks and image.image_id in named
    )
    if orphans:
        raise DatasetError(
            f"{dataset}: image(s) {_listing(orphans)} have no mask file in any folder read, and "
            f"folders or files whose names are not recognised may hold them: {listing}"
        )
    if policy == "error":
        raise DatasetError(f"{dataset}: {len(entries)} unrecognised entries, not read: {listing}")
    log.warning("%s: %d unrecognised entries, not read: %s", dataset, len(entries), listing)


def _id_prefixes(stem: str) -> list[str]:
    """``stem`` and each of its prefixes that ends before a ``_`` (``IDRiD_01_MA``: the id
    ``IDRiD_01`` too), the ids a mask file of that stem may belong to."""
    parts = stem.split("_")
    return ["_".join(parts[:end]) for end in range(1, len(parts) + 1)]


def _listing(items: Sequence[str]) -> str:
    """``items`` joined for a message, the first ``NAMED_AT_MOST`` of them and a count."""
    shown = ", ".join(items[:NAMED_AT_MOST])
    rest = len(items) - NAMED_AT_MOST
    return f"{shown} and {rest} more" if rest > 0 else shown


def drop_unreadable(dataset: str, images: Sequence[NativeImage], policy: str) -> list[NativeImage]:
    """``images`` less those whose photograph or a mask file cannot be opened.

    Under ``error`` such a file is a ``DatasetError`` naming it; under ``warn`` a warning
    names it and says the image's lesion is unknown, and the image is left out of the
    manifest: a missing mask never reads as "no lesion".
    """
    problems = {image.image_id: _unreadable(image) for image in images}
    problems = {image_id: found for image_id, found in problems.items() if found}
    if not problems:
        return list(images)
    lines = [line for found in problems.values() for line in found]
    if policy == "error":
        raise DatasetError(f"{dataset}: {len(lines)} file(s) cannot be opened: {_listing(lines)}")
    log.warning(
        "%s: %d image(s) left out of the manifest, their lesions unknown: %s",
        dataset,
        len(problems),
        _listing(lines),
    )
    return [image for image in images if image.image_id not in problems]


def _unreadable(image: NativeImage) -> list[str]:
    """What cannot be opened of ``image``: its photograph, and each lesion's mask files."""
    found = [(None, image.image_path)] + [
        (lesion, mask) for lesion, masks in image.masks.items() for mask in masks
    ]
    lines = []
    for lesion, path in found:
        problem = _open_problem(path)
        if problem:
            role = f"the {lesion} mask" if lesion else "the photograph"
            lines.append(f"{path} ({role} of {image.image_id}: {problem})")
    return lines


def _open_problem(path: Folder) -> str:
    """Why a listed file cannot be opened, or "" (archive members are read from the listing)."""
    if not isinstance(path, Path) or archives.split_member_path(path):
        return ""
    if path.is_symlink() and not path.exists():
        return "a symbolic link to nothing, e.g. a git-annex or DVC file not yet fetched"
    try:
        with path.open("rb"):
            return ""
    except OSError as error:
        return f"cannot be opened: {error.strerror or error}"


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image (a file or a zip member, ``data.archives``) from its header."""
    try:
        return archives.image_size(path)
    except OSError as error:
        raise DatasetError(str(error)) from error
