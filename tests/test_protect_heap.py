"""The CPU protection keeps freed blocks in the heap (guard.protection.heap), and gives the
process glibc's defaults back when the last protection ends."""

from __future__ import annotations

import ctypes
import sys

import pytest

from guard.protection import heap

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or heap._libc() is None, reason="glibc only"
)

BLOCK = 64 * 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mmapped_while_holding(n: int) -> int:
    """Bytes glibc holds in separate mmap()s while a block of n bytes is alive."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    buf = ctypes.create_string_buffer(n)  # one malloc of n bytes
    held = libc.mallinfo2().hblkhd
    del buf
    return held


def test_large_blocks_come_from_the_heap_only_inside():
    before = _mmapped_while_holding(BLOCK)
    assert before >= BLOCK  # glibc's default: a block this large is its own mmap()
    with heap.keep_freed_memory() as kept:
        assert kept is True
        assert _mmapped_while_holding(BLOCK) < BLOCK
    assert _mmapped_while_holding(BLOCK) >= BLOCK  # the defaults are back


def test_nested_protections_keep_the_setting_until_the_last_ends():
    with heap.keep_freed_memory():
        with heap.keep_freed_memory():
            pass
        assert _mmapped_while_holding(BLOCK) < BLOCK
    assert _mmapped_while_holding(BLOCK) >= BLOCK
