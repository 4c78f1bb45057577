"""The marked picture's own fingerprint: does the picture in hand match the record's picture?

A watermark says which record a file points at; it cannot say the file is that record's picture.
Anyone can lift a mark off one image and add it to another (or, with the public key, embed any
ID anywhere). So the record keeps a small picture of the marked image (its luma at 1/4 of the
working resolution: 128 cells on the short side, 8-bit, zlib), and verify compares it with the
file after undoing the geometry the detector measured (scale, rotation, mirror, crop offset).

The comparison is the correlation of the two pictures' detail (each minus its own local mean,
so brightness, contrast and a colour cast do not matter) over the part of the record's frame
the file covers. A genuine copy lines up to a fraction of a cell and correlates strongly; another
picture does not, and nor does a near-duplicate of the same scene shifted by a few pixels,
because the mark's geometry pins down *where* the content must be.

Why not a perceptual hash (imagehash's pHash, dHash): those are built to ignore small shifts and
crops, which is the opposite of what is needed here, and a global hash cannot be compared over a
70% crop. `benchmarks/bench_watermark.py --security` measures both.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from guard.provenance.manifest import FINGERPRINT_ALG as ALGORITHM

__all__ = ["ALGORITHM", "ContentMatch", "compare", "compute", "from_thumbnail"]

if TYPE_CHECKING:
    from PIL import Image

    from guard.watermark.engine import Alignment

CELL = 4  # working pixels per fingerprint cell (working resolution: short side 512)
MATCH = 0.85  # correlation at or above which the pictures are the same (see docs/watermark.md)
MIN_COVER = 0.2  # a file must cover at least this share of the record's frame to be compared
_MAGIC = b"GFP1"
_DETAIL_SIGMA = 2.0  # cells: what "local mean" means for the detail both sides are reduced to
_FLAT = 1.5  # grey levels of detail RMS below which a picture has nothing to compare


@dataclass(frozen=True)
class ContentMatch:
    """The outcome of the comparison. `match` is None when nothing could be compared."""

    match: bool | None
    score: float | None  # correlation of detail, -1..1
    reason: str | None = None  # why there was nothing to compare


def compute(image: Image.Image) -> bytes:
    """The fingerprint of a (marked) picture, as stored in the ledger and the manifest."""
    from guard.watermark import pixels

    luma = pixels.working_luma(image)
    h, w = luma.shape
    gw, gh = max(1, round(w / CELL)), max(1, round(h / CELL))
    return _pack(cv2.resize(luma, (gw, gh), interpolation=cv2.INTER_AREA))


def from_thumbnail(jpeg: bytes) -> bytes:
    """A fingerprint rebuilt from a record's thumbnail (records made before fingerprints).

    The thumbnail (at most 256 px) is coarser than the fingerprint's grid on large pictures, so
    the comparison is a little less sharp, but it still tells one picture from another.
    """
    import io

    from PIL import Image

    from guard.watermark import pixels

    with Image.open(io.BytesIO(jpeg)) as im:
        im.draft("L", im.size)
        luma = np.asarray(im.convert("L"), np.float32)
    ww, wh = pixels.work_size(luma.shape[1], luma.shape[0])
    gw, gh = max(1, round(ww / CELL)), max(1, round(wh / CELL))
    shrink = gw < luma.shape[1]
    grid = cv2.resize(luma, (gw, gh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return _pack(grid)


def _pack(grid: np.ndarray) -> bytes:
    gh, gw = grid.shape
    body = zlib.compress(np.clip(np.rint(grid), 0, 255).astype(np.uint8).tobytes(), 9)
    return _MAGIC + struct.pack(">HHB", gw, gh, CELL) + body


def decode(data: bytes) -> np.ndarray:
    """The stored grid (float32). Raises ValueError for bytes that are not a fingerprint."""
    if len(data) < 9 or data[:4] != _MAGIC:
        raise ValueError("not a guard fingerprint")
    gw, gh, cell = struct.unpack(">HHB", data[4:9])
    if cell != CELL or not (0 < gw <= 4096 and 0 < gh <= 4096):
        raise ValueError("unsupported fingerprint layout")
    raw = zlib.decompressobj().decompress(data[9:], gw * gh + 1)
    if len(raw) != gw * gh:
        raise ValueError("truncated fingerprint")
    return np.frombuffer(raw, np.uint8).reshape(gh, gw).astype(np.float32)


def compare(fingerprint: bytes, image: Image.Image, alignment: Alignment | None) -> ContentMatch:
    """Is `image` the picture `fingerprint` was taken from, placed as `alignment` says?"""
    from guard.watermark import pixels

    if alignment is None:
        return ContentMatch(None, None, "the mark's geometry is unknown")
    try:
        grid = decode(fingerprint)
    except ValueError as exc:
        return ContentMatch(None, None, f"the record's fingerprint is unreadable ({exc})")
    ref = _detail(grid, np.ones_like(grid))
    if float(np.sqrt(np.mean(ref**2))) < _FLAT:
        return ContentMatch(None, None, "the record's picture is too flat to compare")
    luma = pixels.working_luma(image)
    m = np.array(alignment.matrix, np.float64)
    det = abs(np.linalg.det(m))
    if det < 1e-6:
        return ContentMatch(None, None, "the mark's geometry is degenerate")
    inv = np.linalg.inv(m)
    # the file's detail at the size of one fingerprint cell, seen from the record's frame
    per_cell = CELL / math.sqrt(det)  # received working pixels per cell
    smooth = cv2.GaussianBlur(luma, (0, 0), max(0.5, 0.45 * per_cell))
    gh, gw = grid.shape
    cy, cx = np.mgrid[0:gh, 0:gw].astype(np.float64)
    centres = np.stack([(cx + 0.5) * CELL - 0.5, (cy + 0.5) * CELL - 0.5], -1)
    best: float | None = None
    covered = 0.0
    for shift in _shifts(alignment, (gh * CELL, gw * CELL), inv, luma.shape):
        pos = (centres - shift) @ inv.T  # record-frame cell centre -> received working pixel
        inside = (
            (pos[..., 0] >= 0)
            & (pos[..., 0] <= luma.shape[1] - 1)
            & (pos[..., 1] >= 0)
            & (pos[..., 1] <= luma.shape[0] - 1)
        )
        cover = float(inside.mean())
        if cover < MIN_COVER:
            continue
        covered = max(covered, cover)
        sample = cv2.remap(
            smooth,
            pos[..., 0].astype(np.float32),
            pos[..., 1].astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        mask = inside.astype(np.float32)
        score = _correlation(_detail(grid, mask), _detail(sample, mask), mask)
        if score is not None and (best is None or score > best):
            best = score
    if best is None:
        reason = (
            "the file covers too little of the record's picture to compare"
            if covered < MIN_COVER
            else "nothing to compare"
        )
        return ContentMatch(None, None, reason)
    return ContentMatch(best >= MATCH, round(best, 4))


def _shifts(
    alignment: Alignment, frame: tuple[int, int], inv: np.ndarray, shape: tuple[int, ...]
) -> list[np.ndarray]:
    """The placements the mark allows: `shift` plus whole periods, where the file can overlap."""
    fh, fw = frame
    h, w = shape[:2]
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64)
    m = np.linalg.inv(inv)
    mapped = corners @ m.T + np.array(alignment.shift)
    lo, hi = mapped.min(0), mapped.max(0)
    p = alignment.period
    out = []
    for kx in range(math.floor((-hi[0]) / p), math.ceil((fw - lo[0]) / p) + 1):
        for ky in range(math.floor((-hi[1]) / p), math.ceil((fh - lo[1]) / p) + 1):
            out.append(np.array(alignment.shift) + p * np.array([kx, ky]))
    return out


def _detail(grid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each cell minus the local mean of the covered cells around it."""
    g = grid.astype(np.float32) * mask
    num = cv2.GaussianBlur(g, (0, 0), _DETAIL_SIGMA)
    den = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), _DETAIL_SIGMA)
    return (grid - num / np.maximum(den, 1e-6)) * mask


def _correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    n = float(mask.sum())
    if n < 64:
        return None
    a, b = a[mask > 0], b[mask > 0]
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if den < 1e-9 or float(np.sqrt((b * b).mean())) < _FLAT / 4:
        return None
    return float((a * b).sum() / den)
