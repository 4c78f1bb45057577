"""Finding the tile's scale and angle again, from the sync peaks (keyless).

1. `residual` whitens the working-resolution luma: a 7×7 median removes edges and flat colour, a
   high-pass removes what is left of the low frequencies, and a local contrast normalisation keeps
   strong texture from drowning the rest of the image.
2. `sync_candidates` searches scale (0.6–2×), angle (±10° around each quarter turn) and
   mirroring for the pose under which the sync template's 16 peaks light up in the residual's
   power spectrum (each bin normalised by its neighbourhood, so only peaks count), sharpens it on
   the lattice's pilot bins, then fits a full 2×2 map to the individually located peaks.
3. Beside those, general affine poses: the template matched peak by peak (`constellation`), and
   the pilots' own lattice near the untouched geometry (`periodicity`), for copies whose axes
   were scaled apart or sheared.

The offset, the fine geometry and the chips come next, in `register`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from guard.watermark import constellation, periodicity
from guard.watermark.layout import BIN_KX, BIN_KY, SYNC_K, TILE

SCALE_RANGE = (0.6, 2.0)
MAX_ANGLE = math.radians(10)


def residual(luma: np.ndarray) -> np.ndarray:
    """Whitened mid-frequency residual of the working-resolution luma."""
    median = cv2.medianBlur(np.clip(luma + 0.5, 0, 255).astype(np.uint8), 7)
    r = luma - median.astype(np.float32)
    r -= cv2.GaussianBlur(r, (0, 0), 3)
    contrast = np.sqrt(cv2.GaussianBlur(r * r, (0, 0), 1.5))
    return np.clip(r / (contrast + 0.6), -4, 4)


# ---- 1. scale and angle ---------------------------------------------------------------------
@dataclass(frozen=True)
class Pose:
    scale: float  # tile period in residual pixels / TILE
    angle: float  # radians, counter-clockwise in image coordinates
    score: float  # summed normalised power at the sync peaks (about 0 without a mark)
    mirror: bool = False  # the image was flipped left-right
    matrix: np.ndarray | None = None  # affine refinement from the individual peaks
    general: bool = False  # a general affine pose: scale and angle only summarise the matrix

    def inverse_map(self) -> np.ndarray:
        """2×2 matrix taking residual pixel coordinates (x, y) to tile coordinates."""
        if self.matrix is not None:
            return self.matrix
        c, s = math.cos(self.angle), math.sin(self.angle)
        m = np.array([[c, s], [-s, c]]) / self.scale
        return m * np.array([-1.0, 1.0]) if self.mirror else m


class _Spectrum:
    def __init__(self, r: np.ndarray) -> None:
        spec = np.fft.fftshift(np.fft.rfft2(r - r.mean()), axes=0)
        power = (spec.real**2 + spec.imag**2).astype(np.float32)
        local = cv2.blur(power, (11, 11), borderType=cv2.BORDER_REFLECT) + 1e-9
        self.complex = spec
        self.ratio = np.minimum(power / local, 30.0)  # about 1 for image content, high on peaks
        padded = np.pad(self.ratio, ((0, 1), (0, 1)), mode="edge")
        # sum over each 2×2 cell, so the coarse search needs one lookup per peak, not four
        self.cells = padded[:-1, :-1] + padded[1:, :-1] + padded[:-1, 1:] + padded[1:, 1:]
        self.shape = r.shape


def _template_bins(shape, m: np.ndarray):
    """Where the sync peaks fall in the (row-shifted) rfft grid under inverse map m."""
    h, w = shape
    k = SYNC_K.astype(float)
    f = k @ m  # cycles per tile, per residual pixel: f = m^T k, row-wise
    fx, fy = f[:, 0] / TILE * w, f[:, 1] / TILE * h
    flip = fx < 0
    sign = np.where(flip, -1.0, 1.0)
    return fx * sign, fy * sign + h // 2, k * sign[:, None]


def _refine_affine(spec: _Spectrum, pose: Pose) -> Pose:
    """Locate each sync peak to a fraction of a bin and fit the full 2×2 map to them."""
    h, w = spec.shape
    fx, fy, k = _template_bins(spec.shape, pose.inverse_map())
    ratio, z = spec.ratio, spec.complex
    rows, targets, weights = [], [], []
    for j in range(len(k)):
        x0, y0 = round(fx[j]), round(fy[j])
        if not (3 <= x0 < ratio.shape[1] - 3 and 3 <= y0 < h - 3):
            continue
        win = ratio[y0 - 2 : y0 + 3, x0 - 2 : x0 + 3]
        dy, dx = np.unravel_index(np.argmax(win), win.shape)
        y1, x1 = y0 - 2 + dy, x0 - 2 + dx
        if ratio[y1, x1] < 6:
            continue  # too weak to localise
        # Jacobsen's estimator: fractional bin offset from three complex DFT values
        den_x = 2 * z[y1, x1] - z[y1, x1 - 1] - z[y1, x1 + 1]
        den_y = 2 * z[y1, x1] - z[y1 - 1, x1] - z[y1 + 1, x1]
        ex = np.real((z[y1, x1 - 1] - z[y1, x1 + 1]) / den_x) if abs(den_x) > 0 else 0.0
        ey = np.real((z[y1 - 1, x1] - z[y1 + 1, x1]) / den_y) if abs(den_y) > 0 else 0.0
        ex, ey = float(np.clip(ex, -0.5, 0.5)), float(np.clip(ey, -0.5, 0.5))
        rows.append(k[j])
        targets.append([(x1 + ex) / w * TILE, (y1 + ey - h // 2) / h * TILE])
        weights.append(min(float(ratio[y1, x1]), 30.0))
    if len(rows) < 6:
        return pose
    wts = np.sqrt(np.array(weights))[:, None]
    m = np.linalg.lstsq(np.array(rows) * wts, np.array(targets) * wts, rcond=None)[0]
    return Pose(pose.scale, pose.angle, pose.score, pose.mirror, m)


def _lattice(bins: np.ndarray | None) -> np.ndarray:
    """Frequencies (kx, ky) of the sync peaks and of the data bins whose energy is periodic."""
    data = np.stack([BIN_KX, BIN_KY], 1) if bins is None else np.stack([BIN_KX, BIN_KY], 1)[bins]
    return np.concatenate([data, SYNC_K]).astype(float)


def _lattice_refine(spec: _Spectrum, pose: Pose, lattice: np.ndarray) -> Pose:
    """Sharpen scale and angle on the power at every periodic bin of the tile's lattice.

    Each data bin is weak, but hundreds of them pin the lattice down far more precisely than
    the 16 sync peaks alone (to ~0.1% and ~0.1° after a 70% crop of a textured photo). Only
    bins that repeat from tile to tile count: a v2 payload is scrambled off the lattice.
    """
    h, w = spec.shape
    ratio = spec.ratio
    best = pose
    for span_s, span_a, n in ((0.008, 1.0, 9), (0.002, 0.2, 9)):
        ss = best.scale * np.exp(np.linspace(-span_s, span_s, n))
        aa = best.angle + np.radians(np.linspace(-span_a, span_a, n))
        s, a = np.meshgrid(ss, aa, indexing="ij")
        c, sn = np.cos(a)[..., None], np.sin(a)[..., None]
        kx, ky = lattice[:, 0], lattice[:, 1]
        fx = (c * kx - sn * ky) / (TILE * s[..., None]) * w
        fy = (sn * kx + c * ky) / (TILE * s[..., None]) * h
        if pose.mirror:
            fx = -fx
        flip = fx < 0
        fx, fy = np.where(flip, -fx, fx), np.where(flip, -fy, fy) + h // 2
        x0, y0 = np.floor(fx).astype(int), np.floor(fy).astype(int)
        ax, ay = fx - x0, fy - y0
        total = np.zeros_like(ax)
        for dy in (0, 1):
            for dx in (0, 1):
                v = ratio[
                    np.clip(y0 + dy, 0, ratio.shape[0] - 1), np.clip(x0 + dx, 0, ratio.shape[1] - 1)
                ]
                total = total + v * (ax if dx else 1 - ax) * (ay if dy else 1 - ay)
        score = total.sum(-1)
        i, j = np.unravel_index(np.argmax(score), score.shape)
        best = Pose(float(ss[i]), float(aa[j]), pose.score, pose.mirror)
    return best


def _scores(spec: _Spectrum, scales, angles, bilinear, mirror=False):
    if not bilinear:  # the coarse grid's lookups depend on the image size only: computed once
        y, x = _coarse_cells(spec.shape, spec.cells.shape, tuple(scales), tuple(angles), mirror)
        return (spec.cells[y, x] - 4.0).sum(-1)
    return _scores_at(spec, scales, angles, bilinear, mirror)


@functools.lru_cache(maxsize=8)  # 4 per image size (2 windows x mirror), 0.4 MB each
def _coarse_cells(shape, cells_shape, scales, angles, mirror):
    """The 2×2 cell of every sync peak at every coarse (scale, angle), for one image size."""
    _, y, x = _positions(shape, np.array(scales), np.array(angles), mirror)
    ph, pw = cells_shape
    y = np.clip(y, 0, ph - 1).astype(np.int16)  # positions in a spectrum of a few hundred bins
    x = np.clip(x, 0, pw - 1).astype(np.int16)
    y.flags.writeable = x.flags.writeable = False
    return y, x


def _positions(shape, scales, angles, mirror):
    """Each sync peak's (row-shifted rfft) position at every (scale, angle): fractional
    (fx, fy) and the cell (y0, x0) it falls in."""
    h, w = shape
    kx, ky = SYNC_K[:, 0].astype(float), SYNC_K[:, 1].astype(float)
    s, a = np.meshgrid(scales, angles, indexing="ij")
    c, sn = np.cos(a)[..., None], np.sin(a)[..., None]
    fx = (c * kx - sn * ky) / (TILE * s[..., None]) * w  # in FFT bins
    fy = (sn * kx + c * ky) / (TILE * s[..., None]) * h
    if mirror:
        fx = -fx
    flip = fx < 0  # rfft keeps one half-plane; the other is its mirror
    fx, fy = np.where(flip, -fx, fx), np.where(flip, -fy, fy) + h // 2
    return (fx, fy), np.floor(fy).astype(int), np.floor(fx).astype(int)


def _scores_at(spec: _Spectrum, scales, angles, bilinear, mirror=False):
    (fx, fy), y0, x0 = _positions(spec.shape, scales, angles, mirror)
    ph, pw = spec.ratio.shape
    ax, ay = fx - x0, fy - y0
    total = np.zeros_like(ax)
    for dy in (0, 1):
        for dx in (0, 1):
            v = spec.ratio[np.clip(y0 + dy, 0, ph - 1), np.clip(x0 + dx, 0, pw - 1)]
            total = total + v * (ax if dx else 1 - ax) * (ay if dy else 1 - ay)
    return (total - 1.0).sum(-1)


def sync_candidates(
    r: np.ndarray, k: int, k_general: int = 0, lattice_bins: np.ndarray | None = None
) -> list[Pose]:
    """The k most likely similarity poses, best first, then up to 3·k_general general affine
    ones (see `constellation` and `periodicity`); registration decides among them all.
    `lattice_bins`: the data bins that repeat in every tile (a layout's pilot bins), for the
    final refinement; default all of them (v1)."""
    spec = _Spectrum(r)
    scales = np.exp(np.arange(math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1]), 0.006))
    small = np.arange(-MAX_ANGLE, MAX_ANGLE + 1e-9, math.radians(0.35))
    found = []  # (coarse score, scale, angle, mirror)
    # Quarter turns and mirror images: the power spectrum cannot tell θ from θ + 180°, so
    # windows around 0° and 90° cover all four turns; registration settles the half turn.
    for mirror in (False, True):
        for base in (0.0, math.pi / 2):
            angles = base + small
            coarse = _scores(spec, scales, angles, False, mirror).astype(np.float32)
            peaks = np.argwhere(coarse == cv2.dilate(coarse, np.ones((5, 5), np.uint8)))
            values = coarse[peaks[:, 0], peaks[:, 1]]
            for i in np.argsort(-values)[: 2 * k + 2]:
                si, ai = peaks[i]
                found.append((float(values[i]), scales[si], angles[ai], mirror))
    found.sort(key=lambda f: -f[0])
    poses = []
    for _, scale, angle, mirror in found[: 2 * k + 2]:
        fine_s = scale * np.exp(np.linspace(-0.006, 0.006, 25))
        fine_a = angle + np.radians(np.linspace(-0.4, 0.4, 17))
        fine = _scores(spec, fine_s, fine_a, True, mirror)
        i, j = np.unravel_index(np.argmax(fine), fine.shape)
        poses.append(Pose(float(fine_s[i]), float(fine_a[j]), float(fine[i, j]), mirror))
    poses.sort(key=lambda p: -p.score)
    lattice = _lattice(lattice_bins)
    chosen = [_refine_affine(spec, _lattice_refine(spec, p, lattice)) for p in poses[:k]]
    # General maps: the template matched peak by peak (squashed, stretched or sheared copies),
    # and the lattice's own power near the untouched geometry (a squash with the sync notched).
    general = constellation.candidate_maps(spec.ratio, spec.shape, k_general + len(chosen))
    general += periodicity.candidate_maps(spec.ratio, spec.shape, lattice, 2 * k_general)
    general = [
        _refine_affine(spec, _from_matrix(m)).inverse_map()
        for m in general
        if all(constellation.distinct(m, p.inverse_map()) for p in chosen)
    ]
    if general:
        sharp = constellation.lattice_refine(spec.ratio, spec.shape, np.stack(general), lattice)
        chosen += [_from_matrix(m) for m in sharp]
    return chosen


def _from_matrix(m: np.ndarray) -> Pose:
    """A pose for a general inverse map; scale and angle are its nearest similarity's."""
    det = float(np.linalg.det(m))
    mirror = det < 0
    mm = m * np.array([-1.0, 1.0]) if mirror else m
    angle = math.atan2(mm[0, 1] - mm[1, 0], mm[0, 0] + mm[1, 1])
    return Pose(1 / math.sqrt(abs(det)), angle, 0.0, mirror, m, general=True)
