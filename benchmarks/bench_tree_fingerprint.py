"""Fingerprinting a dataset tree (``data.tree``) against a bare ``os.walk`` + ``stat``.

The workflow fingerprints every dataset's tree each time it is read, so this
must stay well under a second for a real dataset. Prints the best of a few
runs over a generated tree of 10,000 files in 100 folders, and the ratio to
walking and stat-ing the same files with nothing else.

    python benchmarks/bench_tree_fingerprint.py [--files 10000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lesionsoup.data.tree import tree_fingerprint


def make_tree(root: Path, files: int, per_folder: int = 100) -> None:
    for index in range(files):
        folder = root / f"folder{index // per_folder:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"image{index:05d}.png").write_bytes(b"x" * (index % 97))


def bare_walk(root: Path) -> int:
    count = 0
    for folder, _, names in os.walk(root):
        for name in names:
            os.stat(os.path.join(folder, name))
            count += 1
    return count


def best_of(function: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_tree(root, args.files)
        assert tree_fingerprint(root)["files"] == bare_walk(root) == args.files
        fingerprint = best_of(lambda: tree_fingerprint(root))
        walk = best_of(lambda: bare_walk(root))
    print(f"tree_fingerprint of {args.files} files: {fingerprint * 1000:.1f} ms")
    print(f"os.walk + stat of the same files:     {walk * 1000:.1f} ms")
    print(f"ratio fingerprint / bare walk: {fingerprint / walk:.2f}")


if __name__ == "__main__":
    main()
