"""Other tools' metadata, carried through guard's re-encode byte for byte.

When guard watermarks a picture it must encode new pixels, and an encoder writes only what it is
given. What other tools put in the file must come out as they wrote it and where they read it:
- PNG text chunks (web UI `parameters`, ComfyUI `prompt` and `workflow`, anything else): the raw
  tEXt/zTXt/iTXt chunks are copied as they are, so compression, language and translated-keyword
  tags stay exactly as written (Pillow's PngInfo would re-encode them and lose the flags);
- EXIF: the input's block is kept as it is, only the orientation reset to 1 because the pixels
  are now upright (guard.exif_block). Pillow and exiv2 re-serialise EXIF and turn web UI's
  UserComment (UNDEFINED, "UNICODE\\0" prefix) into int8u bytes that web UI cannot read, so after
  exiv2 has placed the XMP, the original block is spliced back in (`restore`). A TIFF's EXIF
  sub-directories, which Pillow cannot write, are placed by exiv2 (exif_block.into_tiff);
- JPEG APPn segments of other tools (APP13 Photoshop/IPTC-IIM, XMP extension segments, FlashPix,
  maker segments, ...) and the comment (COM), as raw segments. Not carried: what guard writes
  itself from the decoded picture (JFIF, EXIF, the main XMP packet, ICC, Adobe's colour transform
  flag, a C2PA store) and what describes data the new file no longer has (MPF's images after the
  first, a JFXX thumbnail, JPEG XT extensions): those are named in a note.
ICC and XMP go through imageio.encode and guard.provenance.xmp.

The byte surgery is hand-written because no library keeps these bytes untouched: Pillow and
piexif rebuild the EXIF directory, piexif.insert replaces a JPEG's JFIF segment, and Pillow and
exiv2 drop or rewrite the JPEG segments they do not know.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from guard import exif_block, jpeg_segments
from guard.exif_block import EXIF_HEADER, reset_orientation, set_user_comment, user_comment

if TYPE_CHECKING:
    from PIL import Image

    from guard.imageio import LoadedImage

TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
XMP_KEYWORD = b"XML:com.adobe.xmp"
# JPEG segments guard writes itself from the decoded picture: carrying them would duplicate them
_WRITTEN_BY_GUARD = (
    (0xE0, b"JFIF\x00"),  # the encoder's header
    (0xE1, EXIF_HEADER),  # the EXIF block, carried with its orientation reset
    (0xE1, b"http://ns.adobe.com/xap/1.0/\x00"),  # the XMP packet, merged with guard's fields
    (0xE2, b"ICC_PROFILE\x00"),  # the ICC profile, handed to the encoder
    (0xEE, b"Adobe"),  # the encoder's colour transform: it describes the old encoding
)
# JPEG segments that describe data the re-encoded file no longer has
_STALE = (
    (0xE2, b"MPF\x00", "it indexes images stored after this one"),
    (0xE0, b"JFXX\x00", "a thumbnail of the old encoding"),
    (0xEB, b"", "JPEG XT / JUMBF data of the old encoding"),  # a C2PA store is never named
)


@dataclass
class Carried:
    """What the output must carry from the input, ready for imageio.encode."""

    exif: bytes | None = None  # "Exif\0\0" + TIFF structure
    png_chunks: list[bytes] = field(default_factory=list)  # complete raw chunks
    comment: bytes | None = None  # JPEG COM
    jpeg_segments: list[bytes] = field(default_factory=list)  # other tools' raw APPn segments
    notes: list[str] = field(default_factory=list)


def carry(loaded: LoadedImage | None, fmt: str, own_text: dict[str, str]) -> Carried:
    """The metadata of `loaded` that an output in `fmt` keeps; `own_text` (what guard writes
    itself, e.g. a generation's `parameters`) replaces the input's entry of the same name."""
    out = Carried()
    if loaded is None:
        return out
    info = _info(loaded.data)
    out.exif = reset_orientation(_raw_exif(loaded, info))
    chunks = png_text_chunks(loaded.data) if loaded.format == "PNG" else []
    if fmt == "PNG":
        out.png_chunks = [c for c in chunks if chunk_keyword(c) not in own_text]
    elif chunks:
        kept_as_comment = _parameters_to_user_comment(out, chunks, own_text)
        lost = [k for c in chunks if (k := chunk_keyword(c)) != kept_as_comment]
        if lost:
            names = ", ".join(f"'{k}'" for k in dict.fromkeys(lost))
            out.notes.append(
                f"PNG text {names} not carried: a {fmt} file has no place for it; "
                "write a .png to keep it"
            )
    if fmt == "JPEG" and isinstance(info.get("comment"), bytes):
        out.comment = info["comment"]
    if loaded.format == "JPEG":
        _carry_jpeg_segments(out, loaded.data, fmt)
    return out


def foreign_jpeg_segments(data: bytes) -> tuple[list[bytes], list[str]]:
    """Other tools' APPn segments of a JPEG, raw and in order, and the reasons for the ones that
    describe data a re-encoded file no longer has."""
    from guard.provenance.c2pa_io import STORE_UUID

    segments = jpeg_segments.segments(data)
    # APP11 boxes span segments ("JP", box instance, sequence): a C2PA store's UUID is in the
    # first only. The input's store is not stale: it becomes the parent ingredient.
    c2pa_boxes = {g.payload[2:4] for g in segments if g.marker == 0xEB and STORE_UUID in g.payload}
    kept: list[bytes] = []
    stale: list[str] = []
    for seg in segments:
        if not seg.is_app or any(
            seg.marker == m and seg.payload.startswith(h) for m, h in _WRITTEN_BY_GUARD
        ):
            continue
        why = next((w for m, h, w in _STALE if seg.marker == m and seg.payload.startswith(h)), None)
        if why is None:
            kept.append(seg.raw)
        elif not (seg.marker == 0xEB and seg.payload[2:4] in c2pa_boxes):
            stale.append(f"{seg.name} ({why})")
    return kept, list(dict.fromkeys(stale))


def _carry_jpeg_segments(out: Carried, data: bytes, fmt: str) -> None:
    kept, stale = foreign_jpeg_segments(data)
    if fmt == "JPEG":
        out.jpeg_segments = kept
    elif kept:
        names = ", ".join(dict.fromkeys(jpeg_segments.name(r) for r in kept))
        out.notes.append(
            f"JPEG segments {names} not carried: a {fmt} file has no place for them; "
            "write a .jpg to keep them"
        )
    if stale:
        out.notes.append(
            f"JPEG segments not carried, they describe what the new file no longer has: "
            f"{'; '.join(stale)}"
        )


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
    from guard import imageio
    from guard.provenance import xmp

    text = dict(text or {})
    kept = carry(loaded, fmt, text)
    exif = full_exif = kept.exif
    if fmt == "TIFF":  # Pillow writes IFD0; exiv2 then places the whole block
        if "parameters" in text:
            full_exif = set_user_comment(full_exif, text.pop("parameters"))
        exif = exif_block.ifd0_only(full_exif) if full_exif else None
    data = imageio.encode(
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


def _parameters_to_user_comment(
    out: Carried, chunks: list[bytes], own_text: dict[str, str]
) -> str | None:
    """web UI keeps `parameters` in EXIF UserComment outside PNG: move it there, if it is free."""
    if "parameters" in own_text or user_comment(out.exif) is not None:
        return None
    for chunk in chunks:
        if chunk_keyword(chunk) == "parameters":
            text = chunk_text(chunk)
            if text is not None:
                out.exif = set_user_comment(out.exif, text)
                return "parameters"
    return None


def xmp_packet(loaded: LoadedImage | None) -> bytes | None:
    """The input's XMP packet, to merge guard's fields into (a TIFF keeps it in tag 700)."""
    if loaded is None:
        return None
    if loaded.xmp:
        return loaded.xmp
    if loaded.format == "TIFF":
        from PIL import Image

        try:
            with Image.open(io.BytesIO(loaded.data)) as im:
                value = im.tag_v2.get(700)  # type: ignore[attr-defined]
        except Exception:
            return None
        if isinstance(value, str):
            value = value.encode("utf-8")
        return bytes(value) if isinstance(value, (bytes, bytearray)) and value else None
    return None


def _info(data: bytes) -> dict:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return dict(im.info)
    except Exception:  # decoding problems were reported by imageio.decode already
        return {}


def _raw_exif(loaded: LoadedImage, info: dict) -> bytes | None:
    raw = info.get("exif")
    if isinstance(raw, bytes) and raw:
        return raw if raw.startswith(EXIF_HEADER) else EXIF_HEADER + raw
    if loaded.format == "TIFF":  # the directory is the file itself: its values as written
        return exif_block.from_tiff(loaded.data)
    if loaded.exif:  # Pillow's rebuilt copy, for formats whose EXIF Pillow does not hand over
        return loaded.exif if loaded.exif.startswith(EXIF_HEADER) else EXIF_HEADER + loaded.exif
    return None


# ---- after a rewriter ---------------------------------------------------------------------
@dataclass
class Placed:
    """The carried metadata as the encoder placed it, before a rewriter (exiv2) touches it."""

    exif: bytes | None
    text_chunks: list[bytes]
    comment: bytes | None
    jpeg_segments: list[bytes] = field(default_factory=list)


def placed(data: bytes, fmt: str) -> Placed:
    info = _info(data)
    raw = info.get("exif")
    exif = None
    if isinstance(raw, bytes) and raw:
        exif = raw if raw.startswith(EXIF_HEADER) else EXIF_HEADER + raw
    comment = info.get("comment") if fmt == "JPEG" else None
    chunks = png_text_chunks(data) if fmt == "PNG" else []
    segments = foreign_jpeg_segments(data)[0] if fmt == "JPEG" else []
    return Placed(exif, chunks, comment if isinstance(comment, bytes) else None, segments)


def restore(data: bytes, fmt: str, before: Placed) -> bytes:
    """Put back, byte for byte, what exiv2 re-serialised while placing the XMP packet: it
    retypes EXIF UserComment, rewrites a PNG `Description` chunk without its iTXt tags, appends
    a NUL to a JPEG comment, and may rebuild a JPEG's APP13 (Photoshop/IPTC) segment."""
    now = placed(data, fmt)
    if fmt == "PNG" and now.text_chunks != before.text_chunks:
        data = insert_png_chunks(_png_without_text(data), before.text_chunks)
    if fmt == "JPEG" and sorted(now.jpeg_segments) != sorted(before.jpeg_segments):
        data = _restore_segments(data, now.jpeg_segments, before.jpeg_segments)
    if before.exif and now.exif != before.exif:
        if fmt == "JPEG":
            data = jpeg_segments.replace(data, 0xE1, EXIF_HEADER, before.exif)
        elif fmt == "WEBP":
            data = _riff_replace(data, b"EXIF", before.exif[6:])
        elif fmt == "PNG":
            data = _png_replace(data, b"eXIf", before.exif[6:])
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


def _png_replace(data: bytes, kind: bytes, payload: bytes) -> bytes:
    parts, pos = [data[:8]], 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        name = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        parts.append(_chunk(name, payload) if name == kind else data[pos:end])
        pos = end
    return b"".join(parts)


# ---- PNG text chunks -----------------------------------------------------------------------------
def _chunks(data: bytes):
    pos = 8
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        yield data[pos + 4 : pos + 8], pos, pos + 12 + length
        pos += 12 + length


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_text_chunks(data: bytes) -> list[bytes]:
    """Every tEXt/zTXt/iTXt chunk, raw, except the XMP packet (merged and placed by exiv2)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return []
    out = []
    for kind, start, end in _chunks(data):
        if kind in TEXT_CHUNKS and data[start + 8 :].split(b"\x00", 1)[0] != XMP_KEYWORD:
            out.append(data[start:end])
    return out


def chunk_keyword(chunk: bytes) -> str:
    return chunk[8:].split(b"\x00", 1)[0].decode("latin-1")


def chunk_text(chunk: bytes) -> str | None:
    """The text of a raw tEXt/zTXt/iTXt chunk; None when it cannot be read."""
    kind, body = chunk[4:8], chunk[8:-4]
    _, _, rest = body.partition(b"\x00")
    try:
        if kind == b"tEXt":
            return rest.decode("latin-1")
        if kind == b"zTXt":
            return _inflate(rest[1:]).decode("latin-1")
        flag, rest = rest[0], rest[2:]  # compression flag, method (always 0: deflate)
        _lang, _, rest = rest.partition(b"\x00")
        _tkey, _, text = rest.partition(b"\x00")
        return (_inflate(text) if flag else text).decode("utf-8")
    except (IndexError, UnicodeDecodeError, zlib.error, ValueError):
        return None


def _inflate(data: bytes, limit: int = 64 * 2**20) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, limit)
    if d.unconsumed_tail:
        raise ValueError("text chunk too large")
    return out


def _png_without_text(data: bytes) -> bytes:
    parts = [data[:8]]
    for kind, start, end in _chunks(data):
        is_xmp = data[start + 8 :].split(b"\x00", 1)[0] == XMP_KEYWORD
        if kind not in TEXT_CHUNKS or is_xmp:
            parts.append(data[start:end])
    return b"".join(parts)


def insert_png_chunks(data: bytes, chunks: list[bytes]) -> bytes:
    """Insert raw chunks just before the first IDAT (where readers expect text)."""
    if not chunks:
        return data
    for kind, start, _ in _chunks(data):
        if kind == b"IDAT":
            return data[:start] + b"".join(chunks) + data[start:]
    return data
