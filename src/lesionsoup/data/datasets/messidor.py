"""MESSIDOR photographs by name, found wherever the download put them.

MAPLES-DR ships labels only; the photographs are MESSIDOR's, which people keep
in many shapes: ``Base11`` ... ``Base34`` folders next to the labels, nested
(``MESSIDOR/Base11/...``), or still the ``Base11.zip`` ... archives. So, like
the ``maples_dr`` package, the search is recursive: every image file under the
root, and every image member of each ``Base*.zip`` under it, read in place
(``lesionsoup.data.archives``). Folders holding the labels are left out, since
their PNG masks carry the photographs' names. A photograph both extracted and
still in its archive is taken from the extracted file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable
from pathlib import Path, PurePosixPath

from lesionsoup.data.archives import archive_members, member_path
from lesionsoup.data.datasets.native import IMAGE_SUFFIXES, DatasetError, absolute

#: MESSIDOR's archives, one per base (any letter case).
ARCHIVE = re.compile(r"base\d+\.zip", re.IGNORECASE)
#: How many missing names an error spells out before counting the rest.
SHOWN_MISSING = 5


def find_messidor(root: Path, exclude: Collection[Path] = ()) -> dict[str, Path]:
    """Every MESSIDOR photograph under ``root`` by name, outside the folders ``exclude``."""
    files: list[Path] = []
    archives: list[Path] = []
    skipped = {absolute(folder) for folder in exclude}
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(
            name
            for name in subfolders
            if not name.startswith(".") and absolute(Path(folder, name)) not in skipped
        )
        for name in sorted(names):
            path = Path(folder, name)
            if name.startswith("."):
                continue
            if path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
            elif ARCHIVE.fullmatch(name):
                archives.append(path)
    zipped = _by_name(
        (PurePosixPath(member).stem, member_path(archive, member))
        for archive in archives
        for member in archive_members(archive, IMAGE_SUFFIXES)
    )
    return {**zipped, **_by_name((path.stem, path) for path in files)}


def _by_name(named: Iterable[tuple[str, Path]]) -> dict[str, Path]:
    """Paths by photograph name (the file name's stem); one name twice is an error."""
    found: dict[str, Path] = {}
    for name, path in named:
        if name in found:
            raise DatasetError(f"two MESSIDOR images named '{name}': {found[name]} and {path}")
        found[name] = path
    return found


def require_photographs(
    photographs: dict[str, Path], names: Iterable[str], searched: Path, labels: Path
) -> None:
    """Fail naming every image of ``labels`` whose photograph the search of ``searched`` missed."""
    missing = sorted(set(names) - set(photographs))
    if missing:
        shown = ", ".join(f"'{name}'" for name in missing[:SHOWN_MISSING])
        more = f" and {len(missing) - SHOWN_MISSING} more" if len(missing) > SHOWN_MISSING else ""
        raise DatasetError(
            f"{labels}: {len(missing)} labelled image(s) have no MESSIDOR image under "
            f"{searched} (searched recursively, Base*.zip included): {shown}{more}; "
            "set the option 'messidor_root' to the folder holding them"
        )
