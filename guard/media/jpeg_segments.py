"""A JPEG's marker segments before the scan, as raw bytes: list, name, insert, replace.

guard.media.carried decides which segments other tools wrote and must ride along through a re-encode;
this module only moves bytes. Hand-written because the libraries that write JPEG metadata
(Pillow, piexif, exiv2) rebuild the segments they know and drop or rewrite the others, while
these must come out byte for byte.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

SOS, EOI = 0xDA, 0xD9
APP0, APP15 = 0xE0, 0xEF
COM = 0xFE


@dataclass(frozen=True)
class Segment:
    marker: int  # 0xE0 (APP0) ... 0xEF (APP15), 0xFE (COM), 0xDB (DQT), ...
    raw: bytes  # the whole segment: FF, marker, length, payload
    start: int  # its offset in the file

    @property
    def end(self) -> int:
        return self.start + len(self.raw)

    @property
    def payload(self) -> bytes:
        return self.raw[4:]

    @property
    def is_app(self) -> bool:
        return APP0 <= self.marker <= APP15

    @property
    def name(self) -> str:
        """`APP13 Photoshop 3.0`, `APP2 FPXR`: the marker and the identifier its writer put first."""
        ident = self.payload.split(b"\x00", 1)[0][:40].decode("latin-1")
        text = ident if ident.isascii() and ident.isprintable() else ""
        label = f"APP{self.marker - APP0}" if self.is_app else f"marker 0x{self.marker:02X}"
        return f"{label} {text}".strip()


def name(raw: bytes) -> str:
    """The name of one raw segment (see Segment.name)."""
    return Segment(raw[1], raw, 0).name


def segments(data: bytes) -> list[Segment]:
    """Every segment from after SOI up to the start of scan (metadata all comes before it)."""
    out: list[Segment] = []
    if data[:2] != b"\xff\xd8":
        return out
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in (SOS, EOI):
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2 or pos + 2 + length > len(data):
            break  # a damaged length: stop rather than read garbage as segments
        out.append(Segment(marker, data[pos : pos + 2 + length], pos))
        pos += 2 + length
    return out


# the next marker in entropy-coded data: 0xFF, then anything but a stuffed zero, a restart
# marker (RST0-7, inside a scan) or a fill byte
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def count_scans(data: bytes, stop_after: int) -> int:
    """Start-of-scan segments in the first image, counted from the markers alone (no decoding),
    up to `stop_after + 1`.

    A progressive JPEG may repeat a tiny scan thousands of times (61 bytes each), and libjpeg
    decodes every one over the whole picture: 460 KB kept a decoder busy for 27 s. libjpeg-turbo
    added a scan limit to its own API for this reason; Pillow has none, so guard counts first.
    """
    if data[:2] != b"\xff\xd8":
        return 0
    pos, scans = 2, 0
    while pos + 4 <= len(data) and scans <= stop_after:
        if data[pos] != 0xFF:
            match = _NEXT_MARKER.search(data, pos)  # entropy-coded data after a scan header
            if match is None:
                break
            pos = match.start()
            continue
        marker = data[pos + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill, RSTn, TEM
            pos += 1 if marker == 0xFF else 2
            continue
        if marker == EOI:
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            break
        if marker == SOS:
            scans += 1
        pos += 2 + length
    return scans


def build(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def insert(data: bytes, raws: list[bytes]) -> bytes:
    """Insert raw segments after the leading APPn/COM segments (before the tables and frame),
    but before an MPF segment: its offsets count from its own header to the images stored after
    this one, so nothing may be inserted between the two."""
    if not raws or data[:2] != b"\xff\xd8":
        return data
    pos = 2
    for seg in segments(data):
        if not (seg.is_app or seg.marker == COM) or seg.raw[4:8] == b"MPF\x00":
            break
        pos = seg.end
    return data[:pos] + b"".join(raws) + data[pos:]


def swap(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace the segment whose raw bytes are `old` by `new`, in place."""
    for seg in segments(data):
        if seg.raw == old:
            return data[: seg.start] + new + data[seg.end :]
    return data


def remove(data: bytes, raws: list[bytes]) -> bytes:
    """The same bytes without the segments whose raw bytes are in `raws` (one each)."""
    wanted = list(raws)
    out, pos = [], 0
    for seg in segments(data):
        if seg.raw in wanted:
            wanted.remove(seg.raw)
            out.append(data[pos : seg.start])
            pos = seg.end
    return b"".join(out) + data[pos:]


def replace(data: bytes, marker: int, header: bytes, payload: bytes) -> bytes:
    """Replace the first segment with this marker (and payload header) by one holding `payload`."""
    for seg in segments(data):
        if seg.marker == marker and seg.payload.startswith(header):
            return data[: seg.start] + build(marker, payload) + data[seg.end :]
    return data
