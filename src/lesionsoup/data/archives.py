"""Files read in place from zip archives, named by one path: ``<archive>.zip::<member>``.

MESSIDOR ships as ``Base11.zip`` ... ``Base34.zip``; extracting 1200 TIFF
photographs only to read 200 of them doubles the disk they take, so a manifest
may point inside an archive. The path form keeps a manifest cell one absolute
path (``/data/Base11.zip::Base11/20051019_38557_0100_PP.tif``): ``::`` separates
only right after an existing ``.zip`` file (anywhere else it is part of a plain
file name), and a member name is the archive's own (``/``-separated).
``read_bytes`` and ``image_size`` accept plain paths too, so readers call them for
every file without asking which it is.

A dataset's own archive (``AdditionalData.zip``, ``A. Segmentation.zip``) is read
in place as an ``ArchiveFolder``: the part of ``pathlib.Path`` the adapters use
(``iterdir``, ``is_dir``, ``/``, ``name``, ``stem``, ``open``), whose path is the
member path, so the manifest's cells name the files inside the archive.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path, PurePosixPath

from PIL import Image

#: Between an archive's path and a member's name in one path.
MEMBER_SEPARATOR = "::"


class ArchiveError(OSError):
    """An archive or member that cannot be read; the message names the path.

    An ``OSError``, so that readers which already report unreadable files
    (``preprocess.read_photograph``, ``native.image_size``) report these too.
    """


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a zip file (by its suffix, any case) that exists."""
    return path.suffix.lower() == ".zip" and path.is_file()


class ArchiveFolder(zipfile.Path):
    """A folder or file inside a zip archive that reads like a ``pathlib.Path``.

    Its ``str`` and ``os.fspath`` are the ``member_path`` form
    (``/data/AdditionalData.zip::AdditionalData/annotations``), the archive's own
    path for its top, so records built from it point into the archive.
    """

    def __str__(self) -> str:
        member = self.at.rstrip("/")
        archive = os.path.abspath(self.root.filename)
        return f"{archive}{MEMBER_SEPARATOR}{member}" if member else archive

    __fspath__ = __str__

    def __repr__(self) -> str:
        return f"ArchiveFolder({str(self)!r})"

    def __lt__(self, other: object) -> bool:
        return str(self) < str(other)


#: A dataset folder: on the disk, or inside a zip archive.
Folder = Path | ArchiveFolder


def open_archive(archive: Path) -> ArchiveFolder:
    """The top of the zip file ``archive``; an ``ArchiveError`` naming it when unreadable."""
    try:
        return ArchiveFolder(archive)
    except (OSError, zipfile.BadZipFile) as error:
        raise ArchiveError(f"{archive}: not a readable zip archive ({error})") from error


def member_path(archive: Path, member: str) -> Path:
    """The one path that names ``member`` of the zip file ``archive``."""
    return Path(f"{archive}{MEMBER_SEPARATOR}{member}")


def split_member_path(path: str | Path) -> tuple[Path, str] | None:
    """(archive, member) of a ``member_path``, or None for a plain file's path.

    ``::`` separates only after an existing zip file (``is_archive``): elsewhere it is
    part of a plain name, so a missing archive is reported as the missing file it is.
    """
    archive, separator, member = str(path).partition(MEMBER_SEPARATOR)
    return (Path(archive), member) if separator and is_archive(Path(archive)) else None


def archive_members(archive: Path, suffixes: frozenset[str]) -> list[str]:
    """Names of the visible files in ``archive`` whose suffix (any case) is one of ``suffixes``.

    Hidden entries and macOS resource forks (``__MACOSX/``, ``._name``) are left
    out: archives made on a Mac carry one per file, which are no images.
    """
    try:
        with zipfile.ZipFile(archive) as opened:
            names = opened.namelist()
    except (OSError, zipfile.BadZipFile) as error:
        raise ArchiveError(f"{archive}: not a readable zip archive ({error})") from error
    return [
        name
        for name in names
        if not name.endswith("/")
        and PurePosixPath(name).suffix.lower() in suffixes
        and not any(part.startswith((".", "__MACOSX")) for part in PurePosixPath(name).parts)
    ]


def read_bytes(path: str | Path) -> bytes:
    """The content of a plain file or of an archive member (``member_path``)."""
    inside = split_member_path(path)
    if inside is None:
        return Path(path).read_bytes()
    archive, member = inside
    try:
        with zipfile.ZipFile(archive) as opened:
            return opened.read(member)
    except KeyError as error:
        raise ArchiveError(f"{path}: the archive has no member '{member}'") from error
    except (OSError, zipfile.BadZipFile) as error:
        raise ArchiveError(f"{path}: cannot read the archive ({error})") from error


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of a plain image file or an archive member, from its header."""
    source = io.BytesIO(read_bytes(path)) if split_member_path(path) else Path(path)
    try:
        with Image.open(source) as image:
            return image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise ArchiveError(f"{path}: cannot read the image header ({error})") from error
