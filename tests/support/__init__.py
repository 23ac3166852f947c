"""Helpers the tests share, imported as ``support.<module>`` (the root conftest puts tests/ on
the path), and the folders the tests read."""

from pathlib import Path

#: The repository's root.
REPO = Path(__file__).resolve().parents[2]
#: The tests' folder, the one on the path.
TESTS = REPO / "tests"
