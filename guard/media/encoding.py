"""Pixels + metadata → file bytes, for the formats guard signs.

The metadata that must be inside the signed bytes goes in here: PNG text chunks, EXIF (web UI's
`parameters` as UserComment outside PNG), ICC, and for AVIF the XMP packet (exiv2 places it
elsewhere). Re-encoding an input with what other tools wrote is guard.media.reencoding's job.
"""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

from guard.errors import ImageInputError
from guard.media import exif_block, png_chunks
from guard.media.formats import MIME


def encode(
    image: Image.Image,
    fmt: str,
    *,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    xmp: bytes | None = None,
    text: dict[str, str] | None = None,
    lossless: bool = True,
    quality: int = 95,
    chunks: list[bytes] | None = None,
    comment: bytes | None = None,
) -> bytes:
    """Encode pixels plus the metadata that must be in the file before it is signed.

    `text` becomes PNG text chunks; elsewhere its 'parameters' entry goes to EXIF UserComment in
    exactly web UI's form (piexif, "UNICODE" prefix, type UNDEFINED), where web UI and the tools
    that read it look. `chunks` are raw PNG chunks carried from an input (guard.media.carried);
    `comment` a JPEG COM segment.
    """
    if fmt not in MIME:
        raise ImageInputError(f"cannot write {fmt}; guard writes {', '.join(MIME)}")
    Image.init()
    if fmt not in Image.SAVE:  # AVIF: Pillow 11.2 and later, or pillow-avif-plugin (web UI's)
        raise ImageInputError(
            f"this Pillow ({Image.__version__}) cannot write {fmt}: install pillow>=11.2, or "
            "pillow-avif-plugin; or write PNG, JPEG, WebP or TIFF"
        )
    text = dict(text or {})
    if fmt != "PNG" and "parameters" in text:
        exif = exif_block.set_user_comment(exif, text["parameters"])
    params: dict[str, object] = {}
    if icc_profile:
        params["icc_profile"] = icc_profile
    if exif:
        params["exif"] = exif
    if xmp and fmt == "AVIF":
        params["xmp"] = xmp  # exiv2 cannot write AVIF, so its packet is placed here instead
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
        params["pnginfo"] = info
    elif fmt == "JPEG":
        if image.mode in ("RGBA", "LA"):
            raise ImageInputError(
                "JPEG cannot store transparency; write PNG, WebP, TIFF or AVIF instead"
            )
        params.update(quality=quality, subsampling=0)
        if comment:
            params["comment"] = comment
    elif fmt == "WEBP":
        params.update(lossless=True, exact=True) if lossless else params.update(quality=quality)
    elif fmt == "TIFF":
        params["compression"] = "tiff_adobe_deflate"
    elif fmt == "AVIF":
        params["quality"] = quality
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    data = buf.getvalue()
    if fmt == "PNG" and chunks:
        data = png_chunks.insert(data, chunks)
    return data
