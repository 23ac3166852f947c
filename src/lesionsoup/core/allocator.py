"""Freed large buffers kept for the next use instead of handed back to the kernel (glibc).

A loop over photographs allocates and frees buffers of the same few large sizes
once per image: decoded masks, their copies and thresholded crops, resized
planes. glibc's ``malloc`` returns a freed buffer above its mmap threshold to
the kernel at once, and trims free memory at the heap's top above its trim
threshold, so every image's buffers arrive as fresh pages, each first touch a
page fault. In ``lesionsoup preprocess`` on 12 IDRiD-size photographs that was
a fifth of the run (``benchmarks/bench_preprocess.py``: 0.8 s of system time,
386 000 page faults, 53 000 with the thresholds raised). The cost is memory a
process keeps after its peak instead of returning it, which a process working
through images of one size reuses anyway.
"""

from __future__ import annotations

import ctypes

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: The largest mmap threshold glibc accepts on 64-bit systems: buffers up to 32 MiB come
#: from the heap (a decoded photograph, larger, still does not).
MMAP_THRESHOLD = 32 * 2**20
#: Free memory the heap keeps at its top: any size a process of ours reaches.
TRIM_THRESHOLD = 2**31 - 1


def reuse_freed_memory() -> bool:
    """Raise this process's mmap and trim thresholds; False where the C library has no
    ``mallopt`` (not glibc) or refuses them."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # no C library by that name, or no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
