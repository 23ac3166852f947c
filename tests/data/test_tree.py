import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from lesionsoup.data.tree import dataset_roots, refresh_stamp, stamp_contents, tree_fingerprint


def _tree(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks" / "EX").mkdir(parents=True)
    (root / "images" / "a.jpg").write_bytes(b"photo a")
    (root / "masks" / "EX" / "a_EX.tif").write_bytes(b"mask")
    with zipfile.ZipFile(root / "Base11.zip", "w") as archive:
        archive.writestr("member.tif", b"inside")
    return root


def _reference(root: Path) -> dict:
    """The documented fingerprint, by an independent walk: sorted (path, size, mtime) lines."""
    lines = sorted(
        f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\0{path.stat().st_mtime_ns}\n"
        for path in root.rglob("*")
        if path.is_file()
    )
    return {"files": len(lines), "sha256": hashlib.sha256("".join(lines).encode()).hexdigest()}


def test_the_fingerprint_is_the_documented_digest_of_paths_sizes_and_times(tmp_path):
    root = _tree(tmp_path / "root")
    assert tree_fingerprint(root) == _reference(root)
    assert tree_fingerprint(root)["files"] == 3  # the archive counts as one file


def _touch(path: Path, nanoseconds: int) -> None:
    os.utime(path, ns=(nanoseconds, nanoseconds))


CHANGES = {
    "edited": lambda root: (root / "masks/EX/a_EX.tif").write_bytes(b"MASK"),  # same size
    "added": lambda root: (root / "images/b.jpg").write_bytes(b"photo b"),
    "removed": lambda root: (root / "images/a.jpg").unlink(),
    "renamed": lambda root: (root / "images/a.jpg").rename(root / "images/c.jpg"),
    "archive": lambda root: zipfile.ZipFile(root / "Base11.zip", "a").writestr("x.tif", b"x"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_every_change_to_a_file_changes_the_fingerprint_and_reading_does_not(tmp_path, change):
    root = _tree(tmp_path / "root")
    for path in root.rglob("*"):
        _touch(path, 1_000_000_000)  # an edit within the same second still shows
    before = tree_fingerprint(root)
    (root / "images/a.jpg").read_bytes()
    assert tree_fingerprint(root) == before
    CHANGES[change](root)
    assert tree_fingerprint(root) != before
    assert tree_fingerprint(root) == _reference(root)


def test_a_root_that_is_an_archive_counts_by_its_own_size_and_time(tmp_path):
    archive = _tree(tmp_path / "root") / "Base11.zip"
    stat = archive.stat()
    line = f"\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
    assert tree_fingerprint(archive) == {"files": 1, "sha256": hashlib.sha256(line).hexdigest()}


def test_a_missing_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        tree_fingerprint(tmp_path / "nowhere")


def test_the_roots_of_a_dataset_include_the_messidor_root_when_set():
    assert dataset_roots({"root": "a", "messidor_root": None}) == ["a"]
    assert dataset_roots({"root": "a", "messidor_root": "m", "split": {}}) == ["a", "m"]


def test_the_stamp_is_rewritten_only_when_a_root_changed(tmp_path):
    root, other = _tree(tmp_path / "root"), _tree(tmp_path / "messidor")
    stamp = tmp_path / "stamps" / "MAPLES.json"
    roots = [str(root), str(other)]
    assert refresh_stamp(stamp, roots)
    assert json.loads(stamp.read_text()) == {
        "roots": {str(root): _reference(root), str(other): _reference(other)}
    }
    _touch(stamp, 5)
    assert not refresh_stamp(stamp, roots) and stamp.stat().st_mtime_ns == 5
    (other / "images/b.jpg").write_bytes(b"b")  # the second root counts too
    assert refresh_stamp(stamp, roots) and stamp.stat().st_mtime_ns != 5
    assert json.loads(stamp.read_text()) == stamp_contents(roots)
    stamp.write_text("torn")
    assert refresh_stamp(stamp, roots) and json.loads(stamp.read_text()) == stamp_contents(roots)


def test_no_stamp_is_written_while_a_root_is_missing(tmp_path):
    stamp = tmp_path / "stamp.json"
    assert not refresh_stamp(stamp, [str(_tree(tmp_path / "root")), str(tmp_path / "later")])
    assert not stamp.exists()
