"""Finding the tile again: scale and angle from the sync peaks, then offset and fine geometry
from the pilot chips, then the soft value of every chip.

1. `residual` whitens the working-resolution luma: a 5×5 median removes edges and flat colour, a
   high-pass removes what is left of the low frequencies, and a local contrast normalisation keeps
   strong texture from drowning the rest of the image.
2. `sync_candidates` searches scale (0.6–2×) and angle (±10°) for the pose under which the sync
   template's 16 peaks light up in the residual's power spectrum (each bin normalised by its
   neighbourhood, so only peaks count).
3. `register` folds the residual modulo the estimated lattice into one tile, finds the cyclic
   offset by correlating with the pilot chips (sub-pixel, Newton on the correlation peak), then
   refines the whole affine map from the offsets of a 3×3 grid of image regions — a drift of a
   fraction of a pixel across the image is enough to scramble high-frequency chips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from guard.watermark.layout import (
    BIN_KX,
    BIN_KY,
    BIN_X,
    BIN_Y,
    CHIP_RING,
    N_BIN,
    SYNC_K,
    TILE,
    KeyedLayout,
)

SCALE_RANGE = (0.6, 2.0)
MAX_ANGLE = math.radians(10)
_RING = CHIP_RING[:N_BIN]
_N_RING = int(_RING.max()) + 1


def residual(luma: np.ndarray) -> np.ndarray:
    """Whitened mid-frequency residual of the working-resolution luma."""
    median = cv2.medianBlur(np.clip(luma + 0.5, 0, 255).astype(np.uint8), 5)
    r = luma - median.astype(np.float32)
    r -= cv2.GaussianBlur(r, (0, 0), 3)
    contrast = np.sqrt(cv2.GaussianBlur(r * r, (0, 0), 2))
    return np.clip(r / (contrast + 1.0), -4, 4)


# ---- 1. scale and angle ---------------------------------------------------------------------
@dataclass(frozen=True)
class Pose:
    scale: float  # tile period in residual pixels / TILE
    angle: float  # radians, counter-clockwise in image coordinates
    score: float  # summed normalised power at the sync peaks (about 0 without a mark)

    def inverse_map(self) -> np.ndarray:
        """2×2 matrix taking residual pixel coordinates (x, y) to tile coordinates."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        return np.array([[c, s], [-s, c]]) / self.scale


def _normalised_power(r: np.ndarray) -> np.ndarray:
    spec = np.fft.rfft2(r - r.mean())
    power = np.fft.fftshift((spec.real**2 + spec.imag**2).astype(np.float32), axes=0)
    local = cv2.blur(power, (11, 11), borderType=cv2.BORDER_REFLECT) + 1e-9
    return np.minimum(power / local, 30.0)


def _scores(power, shape, scales, angles, bilinear):
    h, w = shape
    kx, ky = SYNC_K[:, 0].astype(float), SYNC_K[:, 1].astype(float)
    s, a = np.meshgrid(scales, angles, indexing="ij")
    c, sn = np.cos(a)[..., None], np.sin(a)[..., None]
    fx = (c * kx - sn * ky) / (TILE * s[..., None]) * w  # in FFT bins
    fy = (sn * kx + c * ky) / (TILE * s[..., None]) * h
    flip = fx < 0  # rfft keeps one half-plane; the other is its mirror
    fx, fy = np.where(flip, -fx, fx), np.where(flip, -fy, fy) + h // 2
    x0, y0 = np.floor(fx).astype(int), np.floor(fy).astype(int)
    ax, ay = fx - x0, fy - y0
    ph, pw = power.shape
    total = 0.0
    for dy in (0, 1):
        for dx in (0, 1):
            v = power[np.clip(y0 + dy, 0, ph - 1), np.clip(x0 + dx, 0, pw - 1)]
            if bilinear:
                v = v * (ax if dx else 1 - ax) * (ay if dy else 1 - ay)
            total = total + v
    return (total - (1.0 if bilinear else 4.0)).sum(-1)


def sync_candidates(r: np.ndarray, k: int) -> list[Pose]:
    """The k most likely poses, best first."""
    power = _normalised_power(r)
    scales = np.exp(np.arange(math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1]), 0.006))
    angles = np.arange(-MAX_ANGLE, MAX_ANGLE + 1e-9, math.radians(0.35))
    coarse = _scores(power, r.shape, scales, angles, bilinear=False).astype(np.float32)
    peaks = np.argwhere(coarse == cv2.dilate(coarse, np.ones((5, 5), np.uint8)))
    order = np.argsort(-coarse[peaks[:, 0], peaks[:, 1]])[: 2 * k + 2]
    poses = []
    for si, ai in peaks[order]:
        fine_s = scales[si] * np.exp(np.linspace(-0.006, 0.006, 25))
        fine_a = angles[ai] + np.radians(np.linspace(-0.4, 0.4, 17))
        fine = _scores(power, r.shape, fine_s, fine_a, bilinear=True)
        i, j = np.unravel_index(np.argmax(fine), fine.shape)
        poses.append(Pose(float(fine_s[i]), float(fine_a[j]), float(fine[i, j])))
    poses.sort(key=lambda p: -p.score)
    return poses[:k]


# ---- 2. offset and fine geometry --------------------------------------------------------------
@dataclass
class Registration:
    inverse_map: np.ndarray  # residual (x, y) -> tile coordinates, before the offset
    offset: np.ndarray  # (dy, dx) cyclic shift of the tile, sub-pixel
    bins: np.ndarray  # folded tile's data bins (complex)
    ring_power: np.ndarray  # mean |bin|^2 per frequency ring: the noise level
    z: float  # pilot correlation peak, in standard deviations over all offsets

    @property
    def scale(self) -> float:
        return float(1 / math.sqrt(abs(np.linalg.det(self.inverse_map))))

    @property
    def angle_degrees(self) -> float:
        m = self.inverse_map
        return float(math.degrees(math.atan2(m[0, 1] - m[1, 0], m[0, 0] + m[1, 1])))


class _Folder:
    """Folds (a region of) the residual modulo the tile under a given affine map."""

    def __init__(self, r: np.ndarray) -> None:
        self.r = r
        self.ys, self.xs = np.mgrid[0 : r.shape[0], 0 : r.shape[1]].astype(np.float32)

    def bins(self, m: np.ndarray, rows=slice(None), cols=slice(None)) -> np.ndarray:
        xs, ys, r = self.xs[rows, cols], self.ys[rows, cols], self.r[rows, cols]
        a = np.rint(m[0, 0] * xs + m[0, 1] * ys).astype(np.int64) % TILE
        b = np.rint(m[1, 0] * xs + m[1, 1] * ys).astype(np.int64) % TILE
        idx = (b * TILE + a).ravel()
        total = np.bincount(idx, weights=r.ravel(), minlength=TILE * TILE)
        count = np.bincount(idx, minlength=TILE * TILE)
        tile = np.where(count > 0, total / np.maximum(count, 1), 0.0).reshape(TILE, TILE)
        return np.fft.fft2(tile)[BIN_Y, BIN_X]


def _ring_power(bins: np.ndarray) -> np.ndarray:
    total = np.bincount(_RING, weights=bins.real**2 + bins.imag**2, minlength=_N_RING)
    return total / np.maximum(np.bincount(_RING, minlength=_N_RING), 1) + 1e-12


def _pilot_offset(
    bins: np.ndarray, layout: KeyedLayout, around: np.ndarray | None = None, radius: int = 6
) -> tuple[np.ndarray, float]:
    """Cyclic offset (dy, dx) of the pilot in a folded tile, and the peak's z-score."""
    g = bins * np.conj(layout.pilot_bins) / _ring_power(bins)[_RING]
    full = np.zeros((TILE, TILE), complex)
    full[BIN_Y, BIN_X] = g
    full[(-BIN_Y) % TILE, (-BIN_X) % TILE] = np.conj(g)
    corr = np.fft.ifft2(full).real
    if around is None:
        oy, ox = np.unravel_index(np.argmax(corr), corr.shape)
    else:
        cy, cx = round(float(around[0])), round(float(around[1]))
        yy = np.arange(cy - radius, cy + radius + 1)
        xx = np.arange(cx - radius, cx + radius + 1)
        sub = corr[np.ix_(yy % TILE, xx % TILE)]
        j, i = np.unravel_index(np.argmax(sub), sub.shape)
        oy, ox = yy[j], xx[i]
    z = float((corr[oy % TILE, ox % TILE] - corr.mean()) / (corr.std() + 1e-12))
    d = np.array([float(oy), float(ox)])
    ky, kx = 2 * np.pi * BIN_KY / TILE, 2 * np.pi * BIN_KX / TILE
    for _ in range(3):  # Newton steps on Re Σ g·e^{i k·d}
        gp = g * np.exp(1j * (ky * d[0] + kx * d[1]))
        grad = np.array([np.sum((1j * ky * gp).real), np.sum((1j * kx * gp).real)])
        hyy, hxx, hxy = (
            -np.sum(ky * ky * gp.real),
            -np.sum(kx * kx * gp.real),
            -np.sum(kx * ky * gp.real),
        )
        hess = np.array([[hyy, hxy], [hxy, hxx]])
        if hyy >= 0 or np.linalg.det(hess) <= 0:
            break
        step = np.linalg.solve(hess, grad)
        if np.abs(step).max() > 1:
            break
        d = d - step
    return d, z


def register(r: np.ndarray, pose: Pose, layout: KeyedLayout, grid: int = 3) -> Registration:
    folder = _Folder(r)
    m = pose.inverse_map()
    bins = folder.bins(m)
    offset, z = _pilot_offset(bins, layout)
    best = Registration(m, offset, bins, _ring_power(bins), z)
    h, w = r.shape
    for _ in range(2):
        rows, rhs, weights = [], [], []
        for gy in range(grid):
            for gx in range(grid):
                y0, y1 = gy * h // grid, (gy + 1) * h // grid
                x0, x1 = gx * w // grid, (gx + 1) * w // grid
                part = folder.bins(best.inverse_map, slice(y0, y1), slice(x0, x1))
                d, zr = _pilot_offset(part, layout, around=best.offset)
                if zr < 4:
                    continue
                cx, cy = (x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2
                # the offset drifts linearly across the image when the map is slightly off
                rows += [[1, 0, cx, cy, 0, 0], [0, 1, 0, 0, cx, cy]]
                rhs += [d[1], d[0]]
                weights += [zr, zr]
        if len(rows) < 8:
            break
        ref = np.array([best.offset[1], best.offset[0]] * (len(rhs) // 2))
        target = ref + (np.array(rhs) - ref + TILE / 2) % TILE - TILE / 2
        wts = np.array(weights)
        sol = np.linalg.lstsq(np.array(rows) * wts[:, None], target * wts, rcond=None)[0]
        m = best.inverse_map - np.array([[sol[2], sol[3]], [sol[4], sol[5]]])
        bins = folder.bins(m)
        offset, z = _pilot_offset(bins, layout)
        if z <= best.z:
            break
        best = Registration(m, offset, bins, _ring_power(bins), z)
    return best


# ---- 3. soft chips ------------------------------------------------------------------------------
def soft_chips(reg: Registration, layout: KeyedLayout, group: int = 3) -> np.ndarray:
    """Every chip's soft value, scaled by its frequency ring's signal-to-noise ratio.

    The ratio is measured on the pilot chips, so a blur or JPEG that wiped out the top of the
    band automatically gets less say in the decision.
    """
    phase = np.exp(2j * np.pi * (BIN_KY * reg.offset[0] + BIN_KX * reg.offset[1]) / TILE)
    c = reg.bins * phase / np.sqrt(reg.ring_power[_RING])
    soft = np.concatenate([c.real, c.imag])
    soft /= np.sqrt(np.mean(soft**2)) + 1e-12
    ring_group = CHIP_RING // group
    pil = layout.pilot_idx
    n = int(ring_group.max()) + 1
    signal = np.bincount(ring_group[pil], weights=soft[pil] * layout.pilot_sign, minlength=n)
    signal /= np.maximum(np.bincount(ring_group[pil], minlength=n), 1)
    return soft * np.maximum(signal, 0.02)[ring_group]
