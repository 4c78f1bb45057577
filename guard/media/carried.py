"""Other tools' metadata, carried through guard's re-encode byte for byte.

When guard watermarks a picture it must encode new pixels, and an encoder writes only what it is
given. What other tools put in the file must come out as they wrote it and where they read it:
- PNG text chunks (web UI `parameters`, ComfyUI `prompt` and `workflow`, anything else): the raw
  tEXt/zTXt/iTXt chunks are copied as they are, so compression, language and translated-keyword
  tags stay exactly as written (Pillow's PngInfo would re-encode them and lose the flags);
- EXIF: the input's block is kept as it is, only the orientation reset to 1 because the pixels
  are now upright (guard.media.exif_block). Pillow and exiv2 re-serialise EXIF and turn web UI's
  UserComment (UNDEFINED, "UNICODE\\0" prefix) into int8u bytes that web UI cannot read, so after
  exiv2 has placed the XMP, the original block is spliced back in (guard.media.reencoding). A TIFF's EXIF
  sub-directories, which Pillow cannot write, are placed by exiv2 (exif_block.into_tiff);
- JPEG APPn segments of other tools (APP13 Photoshop/IPTC-IIM, XMP extension segments, FlashPix,
  maker segments, ...) and the comment (COM), as raw segments. Not carried: what guard writes
  itself from the decoded picture (JFIF, EXIF, the main XMP packet, ICC, Adobe's colour transform
  flag, a C2PA store) and what describes data the new file no longer has (MPF's images after the
  first, a JFXX thumbnail, JPEG XT extensions): those are named in a note.
ICC and XMP go through guard.media.encoding and guard.provenance.xmp. guard.media.reencoding encodes
with what this module chose and undoes exiv2's rewrites; guard.media.png_chunks and
guard.media.jpeg_segments move the bytes.

The byte surgery is hand-written because no library keeps these bytes untouched: Pillow and
piexif rebuild the EXIF directory, piexif.insert replaces a JPEG's JFIF segment, and Pillow and
exiv2 drop or rewrite the JPEG segments they do not know.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from guard.media import exif_block, jpeg_segments, png_chunks
from guard.media.exif_block import EXIF_HEADER, reset_orientation, set_user_comment, user_comment

if TYPE_CHECKING:
    from guard.media.imageio import LoadedImage

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
    """What the output must carry from the input, ready for image_encoding.encode."""

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
    info = pillow_info(loaded.data)
    out.exif = reset_orientation(_raw_exif(loaded, info))
    chunks = png_chunks.text_chunks(loaded.data) if loaded.format == "PNG" else []
    if fmt == "PNG":
        out.png_chunks = [c for c in chunks if png_chunks.keyword(c) not in own_text]
    elif chunks:
        kept_as_comment = _parameters_to_user_comment(out, chunks, own_text)
        lost = [k for c in chunks if (k := png_chunks.keyword(c)) != kept_as_comment]
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


def _parameters_to_user_comment(
    out: Carried, chunks: list[bytes], own_text: dict[str, str]
) -> str | None:
    """web UI keeps `parameters` in EXIF UserComment outside PNG: move it there, if it is free."""
    if "parameters" in own_text or user_comment(out.exif) is not None:
        return None
    for chunk in chunks:
        if png_chunks.keyword(chunk) == "parameters":
            text = png_chunks.text(chunk)
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


def pillow_info(data: bytes) -> dict:
    """Pillow's `info` of a file (EXIF and JPEG comment as stored), without decoding pixels."""
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
