"""PIL images ⇄ float planes, for any mode, size and bit depth guard meets.

The mark lives in luminance. Colour images get the same offset on R, G and B, which moves luma
by exactly that offset and leaves chroma alone; alpha is never touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from guard.errors import ImageInputError, TooSmallError
from guard.watermark.layout import WORK_SIDE

MIN_SIDE = 256
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_SIXTEEN = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_CHUNK_PIXELS = 4_000_000  # bounds the float memory used on very large images
MAX_UPSAMPLE_GAIN = 1.33


def too_small(size: tuple[int, int]) -> str | None:
    w, h = size
    if min(w, h) >= MIN_SIDE:
        return None
    return (
        f"too small to carry a watermark: {w}x{h} px, and the short side must be at least "
        f"{MIN_SIDE} px"
    )


def check_size(image: Image.Image) -> None:
    problem = too_small(image.size)
    if problem:
        raise TooSmallError(
            f"{problem}; upscale the image first, or publish it without a watermark"
        )


def work_size(w: int, h: int) -> tuple[int, int]:
    """Working resolution: the short side becomes WORK_SIDE, the aspect ratio is kept."""
    s = WORK_SIDE / min(w, h)
    return max(WORK_SIDE, round(w * s)), max(WORK_SIDE, round(h * s))


def _resize(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (plane.shape[1], plane.shape[0]) == size:
        return plane
    shrink = size[0] < plane.shape[1]
    return cv2.resize(plane, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def working_luma(image: Image.Image) -> np.ndarray:
    """Luma at working resolution, float32 on a 0-255 scale, for any mode."""
    w, h = image.size
    size = work_size(w, h)
    factor = min(w, h) // (2 * WORK_SIDE)
    if factor >= 2:  # huge image: box-reduce in integer steps first to bound memory
        image = _eight_bit(image).reduce(factor)
    return _resize(_luma(image), size)


def _eight_bit(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("RGBA", "LA"):
        return image.convert(image.mode[:-1])
    if image.mode in _SIXTEEN:
        return Image.fromarray((np.asarray(image, np.float32) / 257).clip(0, 255).astype(np.uint8))
    return image.convert("RGB")


def _luma(image: Image.Image) -> np.ndarray:
    if image.mode in _SIXTEEN:
        return np.asarray(image, np.float32) / 257
    image = _eight_bit(image)
    arr = np.asarray(image, np.float32)
    return arr if arr.ndim == 2 else arr @ _LUMA


@dataclass
class Planes:
    """The channels that carry the mark, as a numpy view, and how to rebuild the PIL image."""

    color: np.ndarray  # H×W or H×W×3, the image's own dtype
    scale: float  # 1 for 8-bit data, 257 for 16-bit
    rebuild: Callable[[np.ndarray], Image.Image]


def split(image: Image.Image) -> Planes:
    mode = image.mode
    if mode in ("RGB", "L"):
        return Planes(np.asarray(image), 1.0, lambda a: Image.fromarray(a, mode))
    if mode in ("RGBA", "LA"):
        alpha = image.getchannel("A")
        base = image.convert(mode[:-1])

        def rebuild(a: np.ndarray) -> Image.Image:
            out = Image.fromarray(a, mode[:-1]).convert(mode)
            out.putalpha(alpha)
            return out

        return Planes(np.asarray(base), 1.0, rebuild)
    if mode in _SIXTEEN:
        arr = np.asarray(image)
        return Planes(arr, 257.0, lambda a: Image.fromarray(a.astype(arr.dtype)).convert(mode))
    if mode in ("P", "PA"):
        # Palette indices cannot carry a mark; the output is truecolour (RGBA if transparent).
        has_alpha = mode == "PA" or "transparency" in image.info
        return split(image.convert("RGBA" if has_alpha else "RGB"))
    if mode in ("CMYK", "YCbCr"):
        inner = split(image.convert("RGB"))
        return Planes(inner.color, 1.0, lambda a: inner.rebuild(a).convert(mode))
    if mode in ("RGBX", "LAB", "HSV"):
        return split(image.convert("RGB"))
    raise ImageInputError(
        f"cannot watermark a '{mode}' image (bilevel or floating point); convert it to RGB or "
        "greyscale (L) first"
    )


def add_luma_delta(planes: Planes, delta_work: np.ndarray) -> Image.Image:
    """Upsample the working-resolution luma offset and add it to every colour channel."""
    color = planes.color
    h, w = color.shape[:2]
    ww = delta_work.shape[1]
    top = 65535.0 if planes.scale > 1 else 255.0
    delta_work = delta_work * np.float32(planes.scale)
    out = np.empty_like(color)
    if ww > w:  # image smaller than the working grid: average the offset down
        full = cv2.resize(delta_work, (w, h), interpolation=cv2.INTER_AREA)
        _add(color, full, out, slice(0, h), top)
        return planes.rebuild(out)
    # Upsample with the same half-pixel convention as cv2.resize, a band of rows at a time.
    # Interpolation smooths the offset (about 1 dB of it at twice the working size), which the
    # detector, reading at working size, then misses; the gain gives the full-size offset the
    # energy it was designed with (at most +2.5 dB). One pass measures it, one adds.
    # Two passes rather than one list of bands: memory stays bounded on huge images.
    energy = sum(
        float(np.square(b, dtype=np.float64).sum()) for _, b in _upsampled_bands(delta_work, w, h)
    )
    target = float(np.square(delta_work, dtype=np.float64).mean()) * w * h
    gain = np.float32(min(MAX_UPSAMPLE_GAIN, np.sqrt(target / energy))) if energy > 0 else 1
    for rows, band in _upsampled_bands(delta_work, w, h):
        _add(color, band * gain, out, rows, top)
    return planes.rebuild(out)


def _upsampled_bands(delta_work: np.ndarray, w: int, h: int):
    wh, ww = delta_work.shape
    map_x = ((np.arange(w, dtype=np.float32) + 0.5) * (ww / w) - 0.5)[None, :]
    rows = max(1, _CHUNK_PIXELS // w)
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        map_y = ((np.arange(r0, r1, dtype=np.float32) + 0.5) * (wh / h) - 0.5)[:, None]
        mx, my = np.broadcast_to(map_x, (r1 - r0, w)), np.broadcast_to(map_y, (r1 - r0, w))
        band = cv2.remap(delta_work, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        yield slice(r0, r1), band


def _add(color: np.ndarray, delta: np.ndarray, out: np.ndarray, rows: slice, top: float) -> None:
    src = color[rows].astype(np.float32)
    src += delta[..., None] if src.ndim == 3 else delta
    np.clip(np.rint(src, out=src), 0, top, out=src)
    out[rows] = src.astype(out.dtype)
