"""core.allocator: a process that frees and reallocates large buffers gets them back
without fresh pages (glibc)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

#: Rounds of three 12 MiB buffers held together, then freed: more than glibc's default
#: heap trim keeps, so without ``reuse_freed_memory`` each round faults its pages in anew.
ROUNDS = """
import resource, sys
from lesionsoup.core.allocator import reuse_freed_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_memory()
def rounds(count):
    for _ in range(count):
        buffers = [bytearray(12 * 2**20) for _ in range(3)]
        del buffers
rounds(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(4)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True
    )
    return int(result.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_buffers_come_back_without_page_faults():
    pages = 4 * 3 * 12 * 2**20 // 4096  # every page of four rounds
    assert _page_faults("default") > pages // 2
    assert _page_faults("reuse") < pages // 20
