"""An EXIF block ("Exif\\0\\0" + a TIFF structure) as other tools wrote it, kept byte for byte.

Pillow and piexif rebuild EXIF directories and change what they rebuild (Pillow retypes web UI's
UserComment to int8u and reduces rationals: FNumber 28/10 becomes 14/5), so guard patches the
block in place where it must change something (the orientation), and lets exiv2 move it where
Pillow cannot write it: a TIFF's EXIF, GPS and interoperability sub-directories. exiv2 keeps each
value's type and bytes; the one thing it changes is UCS-2 text (a UNICODE UserComment) when the
target's byte order differs, as the EXIF standard reads that text in the file's byte order.
"""

from __future__ import annotations

import io
import struct

EXIF_HEADER = b"Exif\x00\x00"
ORIENTATION = 0x0112
SUB_DIRECTORIES = {0x8769: "EXIF", 0x8825: "GPS", 0xA005: "interoperability"}
# Tags that describe how a TIFF stores its pixels: the encoder writes its own.
_IMAGE_STRUCTURE = {
    *range(0x0100, 0x0107),  # NewSubfileType, width, length, bits, compression, photometric
    0x0111, 0x0115, 0x0116, 0x0117,  # strip offsets, samples per pixel, rows, strip byte counts
    0x011C, 0x013D, 0x0152, 0x0153,  # planar configuration, predictor, extra samples, format
    0x0142, 0x0143, 0x0144, 0x0145,  # tiles
}  # fmt: skip


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


def _exiv2():
    import pyexiv2

    pyexiv2.set_log_level(4)  # exiv2 warns on stderr about harmless oddities in real files
    return pyexiv2


def _carrier(exif: bytes | None = None) -> bytes:
    """A 1x1 JPEG, optionally holding an EXIF block: what exiv2 reads a block from, or into."""
    from PIL import Image

    buf = io.BytesIO()
    params = {"exif": exif} if exif else {}
    Image.new("L", (1, 1)).save(buf, "JPEG", **params)
    return buf.getvalue()


def _copy_exif(source: bytes, target: bytes) -> bytes:
    pyexiv2 = _exiv2()
    with pyexiv2.ImageData(source) as src, pyexiv2.ImageData(target) as dst:
        src.copy_to_another_image(
            dst, exif=True, iptc=False, xmp=False, comment=False, icc=False, thumbnail=False
        )
        return dst.get_bytes()


def from_tiff(data: bytes) -> bytes | None:
    """A TIFF file's EXIF as a block with every value as written (types, rationals, UserComment
    bytes), sub-directories included; None when exiv2 finds none or cannot read the file."""
    from guard.media import jpeg_segments

    try:
        carrier = _copy_exif(data, _carrier())
    except (RuntimeError, ValueError, OSError):
        return None
    for seg in jpeg_segments.segments(carrier):
        if seg.marker == 0xE1 and seg.payload.startswith(EXIF_HEADER):
            return seg.payload
    return None


def has_sub_directories(exif: bytes | None) -> bool:
    if not exif:
        return False
    return bool(_pillow_exif(exif, lambda ex: any(t in ex for t in SUB_DIRECTORIES)))


def ifd0_only(exif: bytes) -> bytes | None:
    """IFD0's descriptive tags, for Pillow's TIFF writer (which cannot write sub-directories and
    writes its own structure tags)."""

    def strip(ex):
        for tag in (*SUB_DIRECTORIES, *_IMAGE_STRUCTURE):
            ex.pop(tag, None)
        return ex.tobytes()

    return _pillow_exif(exif, strip)


def _pillow_exif(exif: bytes, use):
    from PIL import Image

    ex = Image.Exif()
    try:
        ex.load(exif)
    except Exception:  # an EXIF block Pillow cannot parse
        return None
    return use(ex)


def into_tiff(data: bytes, exif: bytes) -> bytes | None:
    """`data` (a TIFF Pillow wrote) with the whole EXIF block, sub-directories included, placed
    by exiv2, which keeps the TIFF's own structure tags; None when it cannot be done."""
    try:
        return _copy_exif(_carrier(exif), data)
    except (RuntimeError, ValueError, OSError):  # exiv2 errors; a block too big for a carrier
        return None
