"""Other tools' metadata, carried through guard's re-encode byte for byte.

When guard watermarks a picture it must encode new pixels, and an encoder writes only what it is
given. What other tools put in the file must come out as they wrote it and where they read it:
- PNG text chunks (web UI `parameters`, ComfyUI `prompt` and `workflow`, anything else): the raw
  tEXt/zTXt/iTXt chunks are copied as they are, so compression, language and translated-keyword
  tags stay exactly as written (Pillow's PngInfo would re-encode them and lose the flags);
- EXIF: the input's block is kept as it is, only the orientation reset to 1 because the pixels
  are now upright. Pillow and exiv2 re-serialise EXIF and turn web UI's UserComment (UNDEFINED,
  "UNICODE\\0" prefix) into int8u bytes that web UI cannot read, so after exiv2 has placed the
  XMP, the original block is spliced back in (`restore`);
- a JPEG comment (COM segment). ICC and XMP go through imageio.encode and guard.provenance.xmp.

The byte surgery is hand-written because no library keeps these bytes untouched: Pillow and
piexif rebuild the EXIF directory, and piexif.insert replaces a JPEG's JFIF segment.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

    from guard.imageio import LoadedImage

EXIF_HEADER = b"Exif\x00\x00"
TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
XMP_KEYWORD = b"XML:com.adobe.xmp"
ORIENTATION = 0x0112
USER_COMMENT = 0x9286
EXIF_IFD = 0x8769


@dataclass
class Carried:
    """What the output must carry from the input, ready for imageio.encode."""

    exif: bytes | None = None  # "Exif\0\0" + TIFF structure
    png_chunks: list[bytes] = field(default_factory=list)  # complete raw chunks
    comment: bytes | None = None  # JPEG COM
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
    if fmt == "TIFF" and out.exif:
        out.exif = _without_sub_directories(out.exif, out.notes)
    return out


SUB_DIRECTORIES = {0x8769: "EXIF", 0x8825: "GPS", 0xA005: "interoperability"}


def _without_sub_directories(exif: bytes, notes: list[str]) -> bytes | None:
    """Pillow's TIFF writer cannot write EXIF sub-directories (libtiff refuses the pointer, the
    plain writer retypes UserComment), so a re-encoded TIFF keeps IFD0's tags only; say so."""
    from PIL import Image

    ex = Image.Exif()
    try:
        ex.load(exif)
    except Exception:
        return None
    dropped = [name for tag, name in SUB_DIRECTORIES.items() if tag in ex and ex.get_ifd(tag)]
    for tag in SUB_DIRECTORIES:
        ex.pop(tag, None)
    if dropped:
        notes.append(
            f"EXIF {', '.join(dropped)} data not carried: guard cannot yet re-encode TIFF "
            "sub-directories; IFD0 tags, ICC and XMP are kept (write .png, .jpg or .webp to keep "
            "all EXIF)"
        )
    return ex.tobytes()


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
    data = imageio.encode(
        pixels,
        fmt,
        icc_profile=loaded.icc_profile if loaded else None,
        exif=kept.exif,
        xmp=packet,
        text=text,
        lossless=lossless,
        chunks=kept.png_chunks,
        comment=kept.comment,
    )
    if packet and fmt in xmp.EXIV2_WRITES:
        before = placed(data, fmt)
        data = xmp.embed(data, packet)
        data = restore(data, fmt, before)
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
    if loaded.exif:  # TIFF: the directory is the file itself; Pillow's rebuilt copy
        return loaded.exif if loaded.exif.startswith(EXIF_HEADER) else EXIF_HEADER + loaded.exif
    return None


# ---- EXIF ----------------------------------------------------------------------------------------
def _tiff(exif: bytes) -> tuple[bytes, str] | None:
    body = exif[6:] if exif.startswith(EXIF_HEADER) else exif
    order = {b"II": "<", b"MM": ">"}.get(body[:2])
    return (body, order) if order else None


def reset_orientation(exif: bytes | None) -> bytes | None:
    """Set IFD0 Orientation to 1 in place (the pixels were turned upright); nothing else moves."""
    if not exif or not (parsed := _tiff(exif)):
        return exif
    body, e = parsed
    offset = len(exif) - len(body)
    try:
        ifd = struct.unpack_from(e + "I", body, 4)[0]
        for i in range(struct.unpack_from(e + "H", body, ifd)[0]):
            pos = ifd + 2 + 12 * i
            tag, kind, count = struct.unpack_from(e + "HHI", body, pos)
            if tag == ORIENTATION and kind == 3 and count == 1:
                patched = bytearray(exif)
                struct.pack_into(e + "H", patched, offset + pos + 8, 1)
                return bytes(patched)
    except struct.error:
        pass
    return exif


def user_comment(exif: bytes | None) -> bytes | None:
    if not exif:
        return None
    import piexif

    try:
        value = piexif.load(exif).get("Exif", {}).get(piexif.ExifIFD.UserComment)
    except Exception:  # piexif raises many types on odd EXIF; unreadable means absent here
        return None
    return value if value else None


def set_user_comment(exif: bytes | None, text: str) -> bytes:
    """EXIF with `text` as UserComment exactly as web UI writes it (piexif, "unicode")."""
    import piexif
    import piexif.helper

    comment = piexif.helper.UserComment.dump(text, encoding="unicode")
    if exif:
        try:
            data = piexif.load(exif)
            data.setdefault("Exif", {})[piexif.ExifIFD.UserComment] = comment
            return piexif.dump(data)
        except Exception:  # an EXIF piexif cannot rebuild: web UI's own minimal block instead
            pass
    return piexif.dump({"Exif": {piexif.ExifIFD.UserComment: comment}})


@dataclass
class Placed:
    """The carried metadata as the encoder placed it, before a rewriter (exiv2) touches it."""

    exif: bytes | None
    text_chunks: list[bytes]
    comment: bytes | None


def placed(data: bytes, fmt: str) -> Placed:
    info = _info(data)
    raw = info.get("exif")
    exif = None
    if isinstance(raw, bytes) and raw:
        exif = raw if raw.startswith(EXIF_HEADER) else EXIF_HEADER + raw
    comment = info.get("comment") if fmt == "JPEG" else None
    chunks = png_text_chunks(data) if fmt == "PNG" else []
    return Placed(exif, chunks, comment if isinstance(comment, bytes) else None)


def restore(data: bytes, fmt: str, before: Placed) -> bytes:
    """Put back, byte for byte, what exiv2 re-serialised while placing the XMP packet: it
    retypes EXIF UserComment, rewrites a PNG `Description` chunk without its iTXt tags, and
    appends a NUL to a JPEG comment."""
    now = placed(data, fmt)
    if fmt == "PNG" and now.text_chunks != before.text_chunks:
        data = insert_png_chunks(_png_without_text(data), before.text_chunks)
    if before.exif and now.exif != before.exif:
        if fmt == "JPEG":
            data = _jpeg_replace(data, 0xE1, EXIF_HEADER, before.exif)
        elif fmt == "WEBP":
            data = _riff_replace(data, b"EXIF", before.exif[6:])
        elif fmt == "PNG":
            data = _png_replace(data, b"eXIf", before.exif[6:])
    if fmt == "JPEG" and before.comment and now.comment != before.comment:
        data = _jpeg_replace(data, 0xFE, b"", before.comment)
    return data


def _jpeg_replace(data: bytes, marker: int, header: bytes, payload: bytes) -> bytes:
    """Replace the first segment with this marker (and payload header) up to the scan."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        kind = data[pos + 1]
        if kind in (0xDA, 0xD9):  # start of scan: metadata segments all come before it
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if kind == marker and data[pos + 4 : pos + 4 + len(header)] == header:
            segment = bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
            return data[:pos] + segment + data[pos + 2 + length :]
        pos += 2 + length
    return data


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
