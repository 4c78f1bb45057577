"""Keep freed memory in the process while a protection runs on the CPU.

Every optimisation step allocates and frees activations of tens of MiB. glibc serves blocks that
large with fresh mmap()s and returns them at free(), so each step pays the kernel to fault in and
zero the same memory again: 5–7 s of system time in a 13–15 s protection of a 512² image
(docs/protect.md, *Speed*). Raising the mmap threshold and the trim threshold keeps those blocks
in the heap for reuse. No library does this (torch leaves the CPU allocator to libc; jemalloc or
tcmalloc would need LD_PRELOAD), so it is done here with glibc's own mallopt(), and undone, with
a malloc_trim(), when the last protection in the process ends. Elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP = 2**31 - 1  # the largest value mallopt accepts: nothing freed is given back or mmap()ed
DEFAULT_THRESHOLD = 128 * 1024  # glibc's defaults for both

_lock = threading.Lock()
_active = 0


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextmanager
def keep_freed_memory() -> Iterator[bool]:
    """While inside, large freed blocks stay in the heap; yields whether that could be set."""
    global _active
    libc = _libc()
    if libc is None:
        yield False
        return
    with _lock:
        if _active == 0:
            libc.mallopt(M_MMAP_THRESHOLD, KEEP)
            libc.mallopt(M_TRIM_THRESHOLD, KEEP)
        _active += 1
    try:
        yield True
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_THRESHOLD)
                libc.malloc_trim(0)
