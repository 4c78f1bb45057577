"""Bytes → pixels, safely: the one reader of image files. Writing is guard.media.encoding
(pixels → bytes) and guard.media.atomic_write (bytes → file); guard.media.formats lists the formats.

Policy, applied on load so every later stage sees one of four modes (RGB, RGBA, L, LA):

| input                         | becomes | note                                                    |
|-------------------------------|---------|---------------------------------------------------------|
| RGB, RGBA, L, LA              | same    | alpha is carried end to end, never flattened            |
| P / PA (palette)              | RGBA if it has transparency, else RGB | expanded, written as truecolour |
| 1 (bilevel)                   | L       |                                                         |
| I;16 / I (16-bit grey)        | L       | reduced to 8 bits (a warning says so)                   |
| 48/64-bit RGB(A)              | RGB(A)  | Pillow decodes them at 8 bits (a warning says so)       |
| CMYK                          | RGB     | through the embedded ICC profile when there is one;     |
|                               |         | the output then carries an sRGB profile                 |
| YCbCr, LAB, HSV, RGBX         | RGB     |                                                         |

EXIF orientation is applied to the pixels and reset to 1. The ICC profile is kept.
Where no pixel has to change, callers can write `LoadedImage.data` as it is (bit-exact, 16-bit kept).

Hostile input: guard's pixel limit (179 MP, GUARD_MAX_PIXELS) is the one that applies (Pillow's
lower warning level is ignored, and its hard limit raised with guard's); a PNG text chunk that
inflates past Pillow's 1 MB is refused, naming the chunk. `sniff` names the format from the
first bytes, so metadata can be read before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageCms, PngImagePlugin, UnidentifiedImageError

from guard.errors import ImageInputError
from guard.media import jpeg_segments
from guard.media.formats import MIME
from guard.media.safe_read import read_regular

DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's hard bomb limit (2 × MAX_IMAGE_PIXELS)
# Progressive encoders write about 10 scans (libjpeg, jpegtran) and mozjpeg up to about 20; a
# file with more is built to keep a decoder busy (see jpeg_segments.count_scans).
MAX_JPEG_SCANS = 100
# Magic bytes -> format, so a caller can read metadata before any pixel is decoded.
_MAGIC = (
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
)
_AVIF_BRANDS = (b"avif", b"avis")
_XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\x00"  # a JPEG APP1 segment that holds an XMP packet
# EXIF orientation -> the transposition that displays the pixels upright (as ImageOps does)
_TRANSPOSE = {
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    4: lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_270),
    7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
    8: lambda im: im.transpose(Image.Transpose.ROTATE_90),
}
EXIF_IFD = 0x8769
USER_COMMENT = 0x9286


def max_pixels() -> int:
    """Pixel budget per image; GUARD_MAX_PIXELS raises it for trusted, genuinely huge inputs."""
    try:
        return int(os.environ.get("GUARD_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


@dataclass
class LoadedImage:
    image: Image.Image
    format: str
    data: bytes
    path: Path | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    text: dict[str, str] = field(default_factory=dict)
    source_mode: str = ""
    lossless: bool = True
    notes: list[str] = field(default_factory=list)
    reduced_from: tuple[int, int] | None = None  # the file's own size when decoded reduced

    @property
    def mime(self) -> str:
        return MIME[self.format]

    @property
    def name(self) -> str:
        return str(self.path) if self.path else "<image>"


def _fail(name: str, problem: str) -> ImageInputError:
    return ImageInputError(f"{name}: {problem}")


def read_file(path: str | os.PathLike[str]) -> bytes:
    """A file's bytes, or an ImageInputError that names it."""
    p = Path(path)
    if not p.exists():
        raise _fail(str(p), "no such file")
    if p.is_dir():
        raise _fail(str(p), "is a folder, not an image file")
    try:
        return read_regular(p)  # a pipe or device named like an image is refused, not read
    except OSError as exc:
        raise _fail(str(p), f"cannot be read ({exc.strerror or exc})") from exc


def load(path: str | os.PathLike[str]) -> LoadedImage:
    p = Path(path)
    loaded = decode(read_file(p), name=str(p))
    loaded.path = p
    return loaded


def sniff(data: bytes, name: str = "<image>") -> str:
    """The format from the first bytes alone, without decoding anything (for reading metadata
    first). Files no magic number names get Pillow's header check, for its precise message."""
    for offset, magic, fmt in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and any(b in data[8 : 8 + _box_size(data)] for b in _AVIF_BRANDS):
        return "AVIF"
    return _open(data, name)[1]


def _box_size(data: bytes) -> int:
    return max(0, min(int.from_bytes(data[:4], "big"), 256) - 8)


def decode(
    data: bytes,
    name: str = "<image>",
    *,
    reduce_over: int | None = None,
    min_side: int = 1024,
) -> LoadedImage:
    """Decode by content (the extension is never trusted) and apply the mode policy.

    With `reduce_over`, an image of more pixels comes back reduced by an integer factor (JPEG
    through its DCT scaling, so the full size is never in memory), its short side still at least
    `min_side`: enough for analysis such as watermark detection, never for re-encoding.
    `reduced_from` then holds the file's own size.
    """
    im, fmt = _open(data, name)
    if fmt == "JPEG" and jpeg_segments.count_scans(data, MAX_JPEG_SCANS) > MAX_JPEG_SCANS:
        raise _fail(
            name,
            f"a progressive JPEG with more than {MAX_JPEG_SCANS} scans: each costs a pass over "
            "the whole picture, so it is not decoded",
        )
    w, h = im.size
    if w == 0 or h == 0:
        raise _fail(name, "has zero width or height")
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and im.format != "MPO":
        raise _fail(name, f"animated image with {frames} frames; extract one frame first")
    factor = max(1, min(w, h) // min_side) if reduce_over and w * h > reduce_over else 1
    if factor > 1 and fmt == "JPEG":
        im.draft(im.mode, (-(-w // factor), -(-h // factor)))  # decodes at 1/2, 1/4 or 1/8
    try:
        im.load()
    except ValueError as exc:
        raise _fail(name, _value_error_words(data, exc)) from exc
    except (OSError, SyntaxError) as exc:
        raise _fail(name, f"truncated or corrupt image data ({exc})") from exc

    info = im.info
    loaded = LoadedImage(
        image=im,
        format=fmt,
        data=data,
        icc_profile=info.get("icc_profile") or None,
        xmp=_as_bytes(info.get("xmp") or info.get("XML:com.adobe.xmp") or _jpeg_xmp(im)),
        text={
            k: v
            for k, v in info.items()
            if isinstance(k, str) and isinstance(v, str) and k != "XML:com.adobe.xmp"
        },
        source_mode=im.mode,
        lossless=_is_lossless(fmt, data),
    )
    exif = im.getexif()
    _read_user_comment(exif, loaded)
    _normalise_mode(loaded, name)
    if factor > 1:
        _reduce(loaded, (w, h), min_side)
    _apply_orientation(loaded, exif.get(0x0112, 1))
    if exif:
        exif.pop(0x0112, None)  # orientation is now baked into the pixels
        try:
            loaded.exif = exif.tobytes()
        except NotImplementedError:  # Pillow < 10 (web UI's 9.5) cannot rebuild a TIFF whose
            if fmt != "TIFF":  # image data is in several strips: its EXIF as written instead
                raise
            from guard.media import exif_block

            loaded.exif = exif_block.from_tiff(data)
    return loaded


def _open(data: bytes, name: str) -> tuple[Image.Image, str]:
    """Pillow's header parse (no pixels yet) under guard's own pixel limit."""
    if not data:
        raise _fail(name, "empty file (0 bytes); nothing to read")
    limit = max_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and limit > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = -(-limit // 2)  # GUARD_MAX_PIXELS raises Pillow's limit too
    try:
        with warnings.catch_warnings():
            # guard's limit below is the one that applies; Pillow's warning level is lower
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise _fail(
            name, "not an image guard can read; supported formats are PNG, JPEG, WebP, TIFF, AVIF"
        ) from exc
    except Image.DecompressionBombError as exc:
        raise _fail(name, _over_limit(None, limit)) from exc
    except ValueError as exc:
        raise _fail(name, _value_error_words(data, exc)) from exc
    except (OSError, SyntaxError) as exc:
        raise _fail(name, f"corrupt or unreadable image ({exc})") from exc
    fmt = "JPEG" if im.format == "MPO" else im.format
    if fmt not in MIME:
        raise _fail(name, f"{im.format} images are not supported; convert it to PNG first")
    if im.size[0] * im.size[1] > limit:
        raise _fail(name, _over_limit(im.size, limit))
    return im, fmt


def _over_limit(size: tuple[int, int] | None, limit: int) -> str:
    declared = (
        f"declares {size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:.0f} MP)"
        if size
        else "declares more pixels"
    )
    return (
        f"{declared}, over the {limit / 1e6:.0f} MP limit (a possible decompression bomb); "
        "set GUARD_MAX_PIXELS to allow larger images you trust"
    )


def _value_error_words(data: bytes, exc: ValueError) -> str:
    """Pillow raises plain ValueError for its text-chunk limits; name the chunk when it is one."""
    chunk = _oversized_text_chunk(data)
    if chunk:
        return (
            f"its PNG text chunk '{chunk}' expands to more than "
            f"{PngImagePlugin.MAX_TEXT_CHUNK // 2**20} MB, past Pillow's safety limit "
            "(a possible decompression bomb); guard does not read such files"
        )
    return f"cannot be read safely ({exc})"


def _oversized_text_chunk(data: bytes) -> str | None:
    """The keyword of the first zTXt/iTXt chunk that inflates past Pillow's MAX_TEXT_CHUNK."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    pos, limit = 8, PngImagePlugin.MAX_TEXT_CHUNK
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        keyword, _, rest = body.partition(b"\x00")
        if kind == b"zTXt":
            compressed = rest[1:]
        elif kind == b"iTXt" and rest[:1] == b"\x01":
            compressed = rest[2:].split(b"\x00", 2)[-1]  # after language and translated keyword
        else:
            continue
        try:
            inflated = zlib.decompressobj().decompress(compressed, limit + 1)
        except zlib.error:
            continue
        if len(inflated) > limit:
            return keyword.decode("latin-1", errors="replace")
    return None


def _reduce(loaded: LoadedImage, size: tuple[int, int], min_side: int) -> None:
    """Box-reduce by the integer factor that keeps the short side at least `min_side`."""
    im = loaded.image
    factor = min(im.size) // min_side
    if factor > 1:
        loaded.image = im.reduce(factor)
    if loaded.image.size != size:
        loaded.reduced_from = size


def _jpeg_xmp(im: Image.Image) -> bytes | None:
    """A JPEG's XMP packet where Pillow does not put it in `info` (before Pillow 10, which web UI
    and Forge pin at 9.5): the first XMP APP1 segment, as Pillow 10 and later read it."""
    for marker, body in getattr(im, "applist", ()):
        if marker == "APP1" and body.startswith(_XMP_APP1):
            return bytes(body[len(_XMP_APP1) :])
    return None


def _as_bytes(value: str | bytes | None) -> bytes | None:
    if value is None:
        return None
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _is_lossless(fmt: str, data: bytes) -> bool:
    if fmt == "WEBP":
        return data[12:16] == b"VP8L"
    return fmt in ("PNG", "TIFF")


def _read_user_comment(exif: Image.Exif, loaded: LoadedImage) -> None:
    """JPEG/WebP carry web UI's generation text in EXIF UserComment; surface it like a PNG chunk."""
    raw = exif.get_ifd(EXIF_IFD).get(USER_COMMENT)
    if isinstance(raw, bytes) and len(raw) > 8:
        prefix, body = raw[:8], raw[8:]
        if prefix.startswith(b"UNICODE"):
            encoding = "utf-16-le" if body[:1] != b"\x00" and body[1:2] == b"\x00" else "utf-16-be"
            text = body.decode(encoding, errors="replace")
        else:
            text = body.decode("utf-8", errors="replace")
        loaded.text.setdefault("parameters", text.rstrip("\x00"))


def _apply_orientation(loaded: LoadedImage, orientation: int | None) -> None:
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        loaded.image = _TRANSPOSE[orientation](loaded.image)


def _normalise_mode(loaded: LoadedImage, name: str) -> None:
    im = loaded.image
    mode = im.mode
    if mode in ("RGB", "RGBA", "L", "LA"):
        if loaded.format == "PNG" and _png_bit_depth(loaded.data) == 16:
            loaded.notes.append("16-bit channels were reduced to 8 bits")
        return
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode == "1":
        im = im.convert("L")
    elif mode.startswith("I") or mode == "F":
        im = _sixteen_to_eight(im)
        loaded.notes.append("16-bit greyscale was reduced to 8 bits")
    elif mode == "CMYK":
        im = _cmyk_to_rgb(im, loaded)
    elif mode in ("RGBa", "La"):
        im = im.convert("RGBA" if mode == "RGBa" else "LA")
    else:
        try:
            im = im.convert("RGB")
        except (ValueError, OSError) as exc:
            raise _fail(name, f"unsupported pixel mode {mode}; convert it to RGB first") from exc
    loaded.image = im


def _png_bit_depth(data: bytes) -> int:
    return data[24] if len(data) > 24 and data[12:16] == b"IHDR" else 8


def _sixteen_to_eight(im: Image.Image) -> Image.Image:
    import numpy as np

    a = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        a = a * 255.0 if a.max(initial=0) <= 1.0 else a
    elif a.max(initial=0) > 255:
        a = a / 257.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _cmyk_to_rgb(im: Image.Image, loaded: LoadedImage) -> Image.Image:
    srgb = ImageCms.createProfile("sRGB")
    if loaded.icc_profile:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(loaded.icc_profile))
            out = ImageCms.profileToProfile(im, src, srgb, outputMode="RGB")
            loaded.icc_profile = ImageCms.ImageCmsProfile(srgb).tobytes()
            loaded.notes.append("CMYK was converted to sRGB through its ICC profile")
            return out  # type: ignore[return-value]
        except (ImageCms.PyCMSError, OSError):
            pass
    loaded.icc_profile = None
    loaded.notes.append("CMYK without a usable ICC profile was converted to RGB naively")
    return im.convert("RGB")


def sniff_format(path: str | os.PathLike[str]) -> str | None:
    """The format a file's header declares, without decoding pixels; None when unreadable.

    For planning a batch's output names before any work (the real check happens on load)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                fmt = "JPEG" if im.format == "MPO" else im.format
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return fmt if fmt in MIME else None
