"""Bytes ⇄ pixels, safely. The only module that opens or writes image files.

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
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

from guard.errors import ImageInputError, OutputExistsError

# Pillow format name -> MIME type; these are the formats guard reads, writes and signs.
MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
}
EXTENSIONS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".avif": "AVIF",
}
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "AVIF": ".avif"}
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's hard bomb limit (2 × MAX_IMAGE_PIXELS)
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

    @property
    def mime(self) -> str:
        return MIME[self.format]

    @property
    def name(self) -> str:
        return str(self.path) if self.path else "<image>"


def _fail(name: str, problem: str) -> ImageInputError:
    return ImageInputError(f"{name}: {problem}")


def load(path: str | os.PathLike[str]) -> LoadedImage:
    p = Path(path)
    if not p.exists():
        raise _fail(str(p), "no such file")
    if p.is_dir():
        raise _fail(str(p), "is a folder, not an image file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise _fail(str(p), f"cannot be read ({exc.strerror or exc})") from exc
    loaded = decode(data, name=str(p))
    loaded.path = p
    return loaded


def decode(data: bytes, name: str = "<image>") -> LoadedImage:
    """Decode by content (the extension is never trusted) and apply the mode policy."""
    if not data:
        raise _fail(name, "empty file (0 bytes); nothing to read")
    limit = max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise _fail(
            name, "not an image guard can read; supported formats are PNG, JPEG, WebP, TIFF, AVIF"
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _fail(name, f"refused as a decompression bomb ({exc})") from exc
    except OSError as exc:
        raise _fail(name, f"corrupt or unreadable image ({exc})") from exc

    fmt = "JPEG" if im.format == "MPO" else im.format
    if fmt not in MIME:
        raise _fail(name, f"{im.format} images are not supported; convert it to PNG first")
    w, h = im.size
    if w * h > limit:
        raise _fail(
            name,
            f"declares {w}x{h} pixels ({w * h / 1e6:.0f} MP), over the {limit / 1e6:.0f} MP limit "
            "(a possible decompression bomb); set GUARD_MAX_PIXELS to allow larger images you trust",
        )
    if w == 0 or h == 0:
        raise _fail(name, "has zero width or height")
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and im.format != "MPO":
        raise _fail(name, f"animated image with {frames} frames; extract one frame first")
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise _fail(name, f"truncated or corrupt image data ({exc})") from exc

    info = im.info
    loaded = LoadedImage(
        image=im,
        format=fmt,
        data=data,
        icc_profile=info.get("icc_profile") or None,
        xmp=_as_bytes(info.get("xmp") or info.get("XML:com.adobe.xmp")),
        text={k: v for k, v in info.items() if isinstance(v, str) and k != "XML:com.adobe.xmp"},
        source_mode=im.mode,
        lossless=_is_lossless(fmt, data),
    )
    exif = im.getexif()
    _read_user_comment(exif, loaded)
    _apply_orientation(loaded)
    _normalise_mode(loaded, name)
    if exif:
        exif.pop(0x0112, None)  # orientation is now baked into the pixels
        loaded.exif = exif.tobytes()
    return loaded


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


def _apply_orientation(loaded: LoadedImage) -> None:
    orientation = loaded.image.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        loaded.image = ImageOps.exif_transpose(loaded.image)


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


def format_for(path: str | os.PathLike[str]) -> str:
    """Output format from the file name; guard writes only formats it can also sign."""
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ImageInputError(
            f"{path}: cannot tell the output format from '{suffix or '(no extension)'}'; "
            f"use one of {', '.join(sorted(EXTENSIONS))}"
        )
    return EXTENSIONS[suffix]


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
) -> bytes:
    """Encode pixels plus the metadata that must be in the file before it is signed.

    `text` becomes PNG text chunks; elsewhere its 'parameters' entry goes to EXIF UserComment,
    where web UI and the tools that read it look.
    """
    if fmt not in MIME:
        raise ImageInputError(f"cannot write {fmt}; guard writes {', '.join(MIME)}")
    text = dict(text or {})
    if fmt != "PNG" and "parameters" in text:
        exif_obj = Image.Exif()
        if exif:
            exif_obj.load(exif)
        exif_obj.get_ifd(EXIF_IFD)[USER_COMMENT] = b"UNICODE\x00" + text["parameters"].encode(
            "utf-16-be"
        )
        exif = exif_obj.tobytes()
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
    elif fmt == "WEBP":
        params.update(lossless=True, exact=True) if lossless else params.update(quality=quality)
    elif fmt == "TIFF":
        params["compression"] = "tiff_adobe_deflate"
    elif fmt == "AVIF":
        params["quality"] = quality
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def save_atomic(path: str | os.PathLike[str], data: bytes, *, force: bool = False) -> Path:
    """Write all-or-nothing: a crash leaves either no file or the complete one, never a torn file.

    Without `force`, an existing file is never replaced, even if it appears during the write
    (the final step is a hard link, which fails if the name exists).
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ImageInputError(f"{target}: the folder {folder} does not exist; create it first")
    if target.exists() and not force:
        raise OutputExistsError(f"{target}: already exists; pass --force to overwrite it")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError as exc:
                raise OutputExistsError(
                    f"{target}: already exists; pass --force to overwrite it"
                ) from exc
            except OSError:  # file systems without hard links
                if target.exists():
                    raise OutputExistsError(
                        f"{target}: already exists; pass --force to overwrite it"
                    ) from None
                os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(folder)
    return target


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
