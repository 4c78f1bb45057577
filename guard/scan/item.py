"""One image to scan (`Item`), its metadata, and the names a report can safely hold.

A file or member name is data from whoever built the data set. A report row and a keep-list line
hold it as text, so a name that is not UTF-8, or that holds a control character (a newline would
write a second path into the keep-list), is never used as it is: the image is unverifiable and
its name is shown escaped.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from guard.media.formats import EXTENSIONS

# Files that look like images but that guard cannot read still get a row (unverifiable), so
# a data set's unsupported files are never silently counted as clean.
OTHER_IMAGE_SUFFIXES = frozenset(
    {".gif", ".bmp", ".jxl", ".heic", ".heif", ".ico", ".jp2", ".ppm", ".pgm", ".pbm", ".svg"}
)
IMAGE_SUFFIXES = frozenset(EXTENSIONS) | OTHER_IMAGE_SUFFIXES
DEFAULT_MAX_BYTES = 256 << 20  # bigger files are unverifiable without being read
MAX_META_BYTES = 1 << 20

# C0, DEL, C1 and the two Unicode line separators: everything str.splitlines() (or a terminal)
# could take as the end of a line or a command
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
UNNAMABLE = (
    "the file name is not valid UTF-8 or holds a control character (shown here with those "
    "escaped): a report or keep-list line cannot name it safely, so it was not read; rename it "
    "to scan it"
)


def name_is_safe(name: str) -> bool:
    """Whether a name can stand in a report and a keep-list line as it is."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a name from the file system with undecodable bytes
        return False
    return CONTROL.search(name) is None


def shown(name: str) -> str:
    """A name as text a report can hold: undecodable bytes as \\xff, control characters as
    \\x0a or \\u2028 (so it is one line, and never equal to a safe name with the same text)."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace") if _surrogates(name) else name
    return CONTROL.sub(lambda m: _escape(m.group()), text)


def _surrogates(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


@dataclass
class Item:
    """One image to scan: a file on disk (read by the worker) or bytes from a shard."""

    path: str  # the report's identity: the file, or SHARD#MEMBER
    file: str | None = None
    data: bytes | None = field(default=None, repr=False)
    sidecar: bytes | None = field(default=None, repr=False)
    meta: dict[str, Any] | None = None
    shard: str | None = None
    key: str | None = None
    problem: str | None = None  # the source could not be read (truncated shard, bad .json)
    size: int | None = None  # bytes of a member that was too large to read


def parse_meta(raw: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """A sample's .json metadata, or the reason it cannot be used (too large, not JSON)."""
    if raw is None or len(raw) > MAX_META_BYTES:
        return None, "the sample's .json metadata is too large to read"
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None, "the sample's .json metadata is not valid JSON"
    if not isinstance(value, dict):  # not img2dataset's (an annotation list, say): not ours
        return None, None
    return value, None
