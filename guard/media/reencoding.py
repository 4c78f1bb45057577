"""The one re-encode path: new pixels in, a file out that keeps what other tools wrote.

guard.media.carried says what the output keeps from the input; this module encodes with it (a TIFF's
EXIF sub-directories placed by exiv2), lets exiv2 place guard's XMP packet, then puts back byte
for byte what exiv2 rewrote on the way (`restore`). Other tools' JPEG segments go in last, so no
rewriter sees them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from guard.media import exif_block, jpeg_segments, png_chunks
from guard.media.carried import carry, foreign_jpeg_segments, pillow_info
from guard.media.exif_block import EXIF_HEADER, set_user_comment

if TYPE_CHECKING:
    from PIL import Image

    from guard.media.imageio import LoadedImage


def reencode(
    pixels: Image.Image,
    fmt: str,
    loaded: LoadedImage | None,
    *,
    text: dict[str, str] | None = None,
    packet: bytes | None = None,
    lossless: bool = True,
) -> tuple[bytes, list[str]]:
    """Encode new pixels for `loaded` in `fmt`, keeping everything other tools wrote, plus
    guard's `text` and XMP `packet`; returns the bytes and notes on what could not be kept.

    The one re-encode path for publish and `guard watermark embed`."""
    from guard.media.encoding import encode
    from guard.provenance import xmp

    text = dict(text or {})
    kept = carry(loaded, fmt, text)
    exif = full_exif = kept.exif
    if fmt == "TIFF":  # Pillow writes IFD0; exiv2 then places the whole block
        if "parameters" in text:
            full_exif = set_user_comment(full_exif, text.pop("parameters"))
        exif = exif_block.ifd0_only(full_exif) if full_exif else None
    data = encode(
        pixels,
        fmt,
        icc_profile=loaded.icc_profile if loaded else None,
        exif=exif,
        xmp=packet,
        text=text,
        lossless=lossless,
        chunks=kept.png_chunks,
        comment=kept.comment,
    )
    if fmt == "TIFF" and exif_block.has_sub_directories(full_exif):
        assert full_exif is not None
        with_exif = exif_block.into_tiff(data, full_exif)
        if with_exif is None:
            kept.notes.append("EXIF sub-directories (EXIF, GPS) could not be placed in the TIFF")
        data = with_exif or data
    if packet and fmt in xmp.EXIV2_WRITES:
        before = placed(data, fmt)
        data = xmp.embed(data, packet)
        data = restore(data, fmt, before)
    if kept.jpeg_segments:  # last: no rewriter sees them
        data = jpeg_segments.insert(data, kept.jpeg_segments)
    return data, kept.notes


# ---- after a rewriter ---------------------------------------------------------------------
@dataclass
class Placed:
    """The carried metadata as the encoder placed it, before a rewriter (exiv2) touches it."""

    exif: bytes | None
    text_chunks: list[bytes]
    comment: bytes | None
    jpeg_segments: list[bytes] = field(default_factory=list)


def placed(data: bytes, fmt: str) -> Placed:
    info = pillow_info(data)
    raw = info.get("exif")
    exif = None
    if isinstance(raw, bytes) and raw:
        exif = raw if raw.startswith(EXIF_HEADER) else EXIF_HEADER + raw
    comment = info.get("comment") if fmt == "JPEG" else None
    chunks = png_chunks.text_chunks(data) if fmt == "PNG" else []
    segments = foreign_jpeg_segments(data)[0] if fmt == "JPEG" else []
    return Placed(exif, chunks, comment if isinstance(comment, bytes) else None, segments)


def restore(data: bytes, fmt: str, before: Placed) -> bytes:
    """Put back, byte for byte, what exiv2 re-serialised while placing the XMP packet: it
    retypes EXIF UserComment, rewrites a PNG `Description` chunk without its iTXt tags, appends
    a NUL to a JPEG comment, and may rebuild a JPEG's APP13 (Photoshop/IPTC) segment."""
    now = placed(data, fmt)
    if fmt == "PNG" and now.text_chunks != before.text_chunks:
        data = png_chunks.insert(png_chunks.without_text(data), before.text_chunks)
    if fmt == "JPEG" and sorted(now.jpeg_segments) != sorted(before.jpeg_segments):
        data = _restore_segments(data, now.jpeg_segments, before.jpeg_segments)
    if before.exif and now.exif != before.exif:
        if fmt == "JPEG":
            data = jpeg_segments.replace(data, 0xE1, EXIF_HEADER, before.exif)
        elif fmt == "WEBP":
            data = _riff_replace(data, b"EXIF", before.exif[6:])
        elif fmt == "PNG":
            data = png_chunks.replace(data, b"eXIf", before.exif[6:])
    if fmt == "JPEG" and before.comment and now.comment != before.comment:
        data = jpeg_segments.replace(data, 0xFE, b"", before.comment)
    return data


def _restore_segments(data: bytes, now: list[bytes], before: list[bytes]) -> bytes:
    """Each segment a rewriter changed goes back, in place, as it was (paired by marker and
    identifier); one it dropped is inserted again, one it added is removed."""
    changed = [r for r in now if r not in before]
    missing = [r for r in before if r not in now]
    for raw in changed:
        name = jpeg_segments.name(raw)
        twin = next((m for m in missing if jpeg_segments.name(m) == name), None)
        if twin is None:
            data = jpeg_segments.remove(data, [raw])
        else:
            missing.remove(twin)
            data = jpeg_segments.swap(data, raw, twin)
    return jpeg_segments.insert(data, missing)


def _riff_replace(data: bytes, kind: bytes, payload: bytes) -> bytes:
    out: list[bytes] = []
    pos, found = 12, False
    while pos + 8 <= len(data):
        name = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        end = pos + 8 + size + (size & 1)
        if name == kind and not found:
            pad = b"\x00" if len(payload) & 1 else b""
            out.append(name + struct.pack("<I", len(payload)) + payload + pad)
            found = True
        else:
            out.append(data[pos:end])
        pos = end
    if not found:
        return data
    body = b"WEBP" + b"".join(out)
    return b"RIFF" + struct.pack("<I", len(body)) + body
