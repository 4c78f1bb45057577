"""Reading a file someone else put there: regular files only, and never more than asked for.

A folder received from others can hold a named pipe called `photo.jpg`, which blocks any reader
forever (opening it waits for a writer), or a link to `/dev/zero`, which never ends. Every file
guard reads as an input (images, sidecars, data sets) goes through here. The file is opened
without blocking and checked on the open descriptor, so it cannot be swapped for a pipe between
the check and the read. Hand-written: the standard library's readers have no such check.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO


class FileTooLarge(Exception):
    """A file over the reader's limit; `size` says how large (it was not read)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a regular file for reading; anything else raises OSError without being read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    fh = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        fh.close()
        raise OSError(errno.EINVAL, "not a regular file: a pipe, a device or a socket")
    return fh


def read_regular(path: str | os.PathLike[str], limit: int | None = None) -> bytes:
    """A regular file's bytes; over `limit` bytes raises FileTooLarge (checked before reading,
    and again on what was read, in case the file grew)."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if limit is None:
            return fh.read()
        if size > limit:
            raise FileTooLarge(size)
        # what the file holds, and one byte more to see whether it grew: read(limit + 1) would
        # allocate the whole limit (256 MB for a scan) for every small file
        data = fh.read(size + 1)
        if len(data) > size:  # it grew since fstat: read on, up to the limit
            data += fh.read(limit + 1 - len(data))
    if len(data) > limit:
        raise FileTooLarge(len(data))
    return data
