"""A PNG's chunks as raw bytes: list the text chunks, read one, insert, remove, replace.

guard.media.carried decides which chunks other tools wrote and must ride along through a re-encode;
this module only moves bytes. Hand-written because Pillow's PngInfo re-encodes text chunks and
loses their compression, language and translated-keyword flags, while these must come out byte
for byte.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
XMP_KEYWORD = b"XML:com.adobe.xmp"


def _chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        yield data[pos + 4 : pos + 8], pos, pos + 12 + length
        pos += 12 + length


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def text_chunks(data: bytes) -> list[bytes]:
    """Every tEXt/zTXt/iTXt chunk, raw, except the XMP packet (merged and placed by exiv2)."""
    if not data.startswith(SIGNATURE):
        return []
    out = []
    for kind, start, end in _chunks(data):
        if kind in TEXT_CHUNKS and data[start + 8 :].split(b"\x00", 1)[0] != XMP_KEYWORD:
            out.append(data[start:end])
    return out


def keyword(raw: bytes) -> str:
    return raw[8:].split(b"\x00", 1)[0].decode("latin-1")


def text(raw: bytes) -> str | None:
    """The text of a raw tEXt/zTXt/iTXt chunk; None when it cannot be read."""
    kind, body = raw[4:8], raw[8:-4]
    _, _, rest = body.partition(b"\x00")
    try:
        if kind == b"tEXt":
            return rest.decode("latin-1")
        if kind == b"zTXt":
            return _inflate(rest[1:]).decode("latin-1")
        flag, rest = rest[0], rest[2:]  # compression flag, method (always 0: deflate)
        _lang, _, rest = rest.partition(b"\x00")
        _tkey, _, value = rest.partition(b"\x00")
        return (_inflate(value) if flag else value).decode("utf-8")
    except (IndexError, UnicodeDecodeError, zlib.error, ValueError):
        return None


def _inflate(data: bytes, limit: int = 64 * 2**20) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, limit)
    if d.unconsumed_tail:
        raise ValueError("text chunk too large")
    return out


def without_text(data: bytes) -> bytes:
    """The file without its text chunks (the XMP packet stays)."""
    parts = [data[:8]]
    for kind, start, end in _chunks(data):
        is_xmp = data[start + 8 :].split(b"\x00", 1)[0] == XMP_KEYWORD
        if kind not in TEXT_CHUNKS or is_xmp:
            parts.append(data[start:end])
    return b"".join(parts)


def insert(data: bytes, chunks: list[bytes]) -> bytes:
    """Insert raw chunks just before the first IDAT (where readers expect text)."""
    if not chunks:
        return data
    for kind, start, _ in _chunks(data):
        if kind == b"IDAT":
            return data[:start] + b"".join(chunks) + data[start:]
    return data


def replace(data: bytes, kind: bytes, body: bytes) -> bytes:
    """Every chunk of `kind` with `body` instead of its own."""
    parts = [data[:8]]
    for name, start, end in _chunks(data):
        parts.append(_chunk(name, body) if name == kind else data[start:end])
    return b"".join(parts)
