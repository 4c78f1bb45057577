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
PARTIAL = 0.3  # below this correlation no block-by-block look is taken: another picture
_MAGIC = b"GFP1"
_DETAIL_SIGMA = 2.0  # cells: what "local mean" means for the detail both sides are reduced to
_FLAT = 1.5  # grey levels of detail RMS below which a picture has nothing to compare


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in the copy's own pixels


@dataclass(frozen=True)
class Region:
    """Where the record's picture is in a copy that is not wholly the record's picture."""

    box: Box  # the part of the copy the record's picture covers
    share: float  # of the copy's area
    other_share: float  # of the copy's area: detail that is not from the record's picture
    changed: tuple[Box, ...] = ()  # parts of the record's picture that were changed
    changed_share: float = 0.0  # of the record's picture's area in the copy

    def to_dict(self) -> dict[str, object]:
        return {
            "box": list(self.box),
            "share": self.share,
            "other_share": self.other_share,
            "changed": [list(b) for b in self.changed],
            "changed_share": self.changed_share,
        }


@dataclass(frozen=True)
class ContentMatch:
    """The outcome of the comparison. `match` is True only when the whole copy is the record's
    picture; `region` says where it is when only part of the copy is (a collage, an edit), and
    then `match` is False. `match` is None when nothing could be compared."""

    match: bool | None
    score: float | None  # correlation of detail, -1..1, over the part the copy covers
    reason: str | None = None  # why there was nothing to compare
    region: Region | None = None  # the record's picture found in part of the copy only


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
    best_at: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
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
            best, best_at = score, (shift, sample, mask)
    if best is None:
        reason = (
            "the file covers too little of the record's picture to compare"
            if covered < MIN_COVER
            else "nothing to compare"
        )
        return ContentMatch(None, None, reason)
    if best < PARTIAL or best_at is None:
        return ContentMatch(False, round(best, 4))
    shift, sample, mask = best_at
    present, region = _region(
        best, grid, sample, mask, smooth, m, shift, per_cell, image.size, luma.shape
    )
    whole = present and region is None and best >= MATCH
    return ContentMatch(whole, round(best, 4), region=region if present else None)


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


# ---- where the copy is the record's picture, and where it is not ----------------------------
BLOCK = 16  # cells per side of a block judged on its own (64 working px: 1/8 of the short side)
# a block of the record's picture whose detail correlates less was changed: genuine copies down
# to JPEG q15 keep 0.83 in 99% of blocks; a near-duplicate 4 px away has a median of 0.54
LOCAL_MATCH = 0.7
OTHER_TOLERANCE = 0.02  # share of the copy that may hold detail from outside the record's frame
MIN_BLOCKS = 4  # blocks with detail needed to say where the record's picture is
PRESENT = 0.5  # share of those blocks that must match for the record's picture to be there
_ACTIVE = 2.0 * _FLAT  # detail RMS (grey levels) of a block that has something to compare
CHANGED = 2.0 * _ACTIVE  # detail RMS a change must add (or take away) to count as one
_OTHER = _FLAT  # detail RMS outside the record's frame that is another picture (soft clouds)


def _region(
    score: float,
    grid: np.ndarray,
    sample: np.ndarray,
    mask: np.ndarray,
    smooth: np.ndarray,
    m: np.ndarray,
    shift: np.ndarray,
    per_cell: float,
    size: tuple[int, int],
    work: tuple[int, ...],
) -> tuple[bool, Region | None]:
    """(whether the record's picture is in the copy at all, and where when not everywhere).

    (True, None): the whole copy is the record's picture. (True, region): only part of it is, or
    part of the record's picture was changed. (False, None): most of the blocks do not match:
    another picture. The global score cannot tell these apart. A collage (the record's picture
    pasted into a larger one) matches wherever the record's picture is, so the copy's area
    *outside* the record's frame is checked for detail of its own (the flat fill of a rotation
    or a letterbox is not another picture). A part replaced inside the frame lowers the global
    score only a little, so each block of the frame is compared on its own.
    """
    ref, got = _detail(grid, mask), _detail(sample, mask)
    # two cells in from every edge (the frame's, and the copy's): there the copy's pixels were
    # blurred with whatever lay beyond, and would read as a change
    interior = cv2.erode(
        mask.astype(np.uint8),
        np.ones((5, 5), np.uint8),
        borderType=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    gh, gw = grid.shape
    scale_x, scale_y = size[0] / work[1], size[1] / work[0]  # working px -> copy px
    inv = np.linalg.inv(m)
    changed: list[Box] = []
    changed_cells = matched = active = 0
    for y0 in range(0, gh, BLOCK):
        for x0 in range(0, gw, BLOCK):
            cut = np.s_[y0 : y0 + BLOCK, x0 : x0 + BLOCK]
            inside = interior[cut] > 0
            if inside.mean() < 0.5:  # a block on an edge: too little of it to judge
                continue
            a, b = ref[cut][inside], got[cut][inside]
            if max(float(np.sqrt((a * a).mean())), float(np.sqrt((b * b).mean()))) < _ACTIVE:
                continue  # flat in both: nothing to tell
            active += 1
            a, b = a - a.mean(), b - b.mean()
            den = float(np.sqrt((a * a).sum() * (b * b).sum()))
            if den > 1e-9 and float((a * b).sum()) / den >= LOCAL_MATCH:
                matched += 1
                continue
            if not _changed(a, b):
                continue  # weak detail that lost its likeness to blur or JPEG: no evidence
            changed_cells += int(inside.sum())
            corners = CELL * np.array(
                [[x0, y0], [x0 + BLOCK, y0], [x0, y0 + BLOCK], [x0 + BLOCK, y0 + BLOCK]],
                np.float64,
            )
            changed.append(_to_copy((corners - shift) @ inv.T, scale_x, scale_y, size))
    if active >= MIN_BLOCKS and matched < PRESENT * active:
        return False, None  # most blocks are not the record's picture
    if active < MIN_BLOCKS and score < MATCH:
        return False, None  # too few blocks to say where: the global score decides
    # the copy on a grid of fingerprint cells: which part lies in the record's frame, and does
    # the rest hold detail of its own?
    step = max(1.0, per_cell)
    px, py = np.meshgrid(np.arange(step / 2, work[1], step), np.arange(step / 2, work[0], step))
    rec = np.stack([px, py], -1) @ m.T + shift
    in_frame = (
        (rec[..., 0] >= 0)
        & (rec[..., 0] < gw * CELL)
        & (rec[..., 1] >= 0)
        & (rec[..., 1] < gh * CELL)
    )
    values = cv2.remap(smooth, px.astype(np.float32), py.astype(np.float32), cv2.INTER_LINEAR)
    outside = (~in_frame).astype(np.float32)
    # the frame's edge is known to a pixel or two: its strip is neither side's evidence
    away = cv2.erode(outside, np.ones((5, 5), np.uint8))
    other = (away > 0) & (_local_rms(values, away) >= _OTHER)
    other_share = float(other.mean())
    if not changed and other_share <= OTHER_TOLERANCE:
        return True, None
    box = (
        _to_copy(np.stack([px[in_frame], py[in_frame]], -1), scale_x, scale_y, size)
        if in_frame.any()
        else (0, 0, 0, 0)
    )
    return True, Region(
        box=box,
        share=round(float(in_frame.mean()), 3),
        other_share=round(other_share, 3),
        changed=tuple(changed),
        changed_share=round(changed_cells / max(1.0, float(mask.sum())), 3),
    )


def _changed(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether a block that does not correlate was changed, not merely blurred: the copy holds
    detail the record's picture does not explain, or lost most of the detail it had."""
    energy_a = float((a * a).sum())
    k = float((a * b).sum()) / energy_a if energy_a > 1e-9 else 0.0
    unexplained = float(np.sqrt(((b - k * a) ** 2).mean()))
    ra, rb = float(np.sqrt((a * a).mean())), float(np.sqrt((b * b).mean()))
    return unexplained >= CHANGED or (ra >= CHANGED and rb < ra / 3)


def _local_rms(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The RMS of detail around each point, from the masked points only (so the border between
    the masked area and the rest is no detail)."""
    num = cv2.GaussianBlur(values * mask, (0, 0), _DETAIL_SIGMA)
    den = np.maximum(cv2.GaussianBlur(mask, (0, 0), _DETAIL_SIGMA), 1e-6)
    resid = (values - num / den) * mask
    energy = cv2.GaussianBlur(resid * resid, (0, 0), BLOCK / 4)
    return np.sqrt(energy / np.maximum(cv2.GaussianBlur(mask, (0, 0), BLOCK / 4), 1e-6))


def _to_copy(points: np.ndarray, sx: float, sy: float, size: tuple[int, int]) -> Box:
    """The bounding box of working-pixel points, in the copy's pixels, clipped to the copy."""
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    clip = lambda v, hi: int(min(max(v, 0), hi))  # noqa: E731
    return (
        clip(math.floor(x0 * sx), size[0]),
        clip(math.floor(y0 * sy), size[1]),
        clip(math.ceil(x1 * sx), size[0]),
        clip(math.ceil(y1 * sy), size[1]),
    )
