"""Registering a pose: the cyclic offset and fine geometry from the pilot chips, then the soft
value of every chip.

`register` folds the residual modulo the tile under a pose from `sync`, finds the cyclic offset
by correlating with the pilot chips (sub-pixel, Newton on the correlation peak), then takes Newton
steps on all six affine parameters (a drift of a fraction of a pixel across the image is enough
to scramble the high-frequency chips). `identity` is the pose with nothing to find: the working
grid as it is.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from guard.watermark.layout import (
    BIN_CLASS,
    BIN_KX,
    BIN_KY,
    BIN_RING,
    BIN_X,
    BIN_Y,
    CHIP_CLASS,
    TILE,
    KeyedLayout,
    data_bins,
)
from guard.watermark.sync import Pose

# A pilot peak this many standard deviations above all 16,384 offsets is no accident (noise
# peaks at about 4-4.5); below it the pose or offset it suggests is not trusted.
PILOT_Z = 5.0
POSE_Z = 4.5  # below this a pose is not refined or decoded (the p-value still pays for it)
_N_CLASS = int(BIN_CLASS.max()) + 1
_LOW_BAND = (BIN_RING <= 17).astype(float)  # coarse registration: tolerates ~2 px of drift
_FULL_BAND = np.ones(len(BIN_RING))
_ON_AXIS = BIN_X == 0  # bins whose mirror image is in the same half-plane


@dataclass
class Registration:
    inverse_map: np.ndarray  # residual (x, y) -> tile coordinates, before the offset
    offset: np.ndarray  # (dy, dx) cyclic shift of the tile, sub-pixel
    bins: np.ndarray  # folded tile's data bins (complex)
    ring_power: np.ndarray  # mean |bin|^2 per noise class (frequency ring, on/off block grid)
    z: float  # pilot correlation peak, in standard deviations over all offsets
    layout: KeyedLayout  # whose pilot it is registered on (v1 or v2, under the key)

    @property
    def scale(self) -> float:
        return float(1 / math.sqrt(abs(np.linalg.det(self.inverse_map))))

    @property
    def mirrored(self) -> bool:
        return bool(np.linalg.det(self.inverse_map) < 0)

    @property
    def angle_degrees(self) -> float:
        m = self.inverse_map * (np.array([-1.0, 1.0]) if self.mirrored else 1.0)
        return float(math.degrees(math.atan2(m[0, 1] - m[1, 0], m[0, 0] + m[1, 1])))


@functools.lru_cache(maxsize=4)
def grid(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (y, x) of a working-resolution image; read-only, shared."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


def mapped(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tile coordinates (x, y) of the working pixels under inverse map m, from a row of x and a
    column of y: the map broadcasts them, two fewer full-size products than mapping the grids.
    Plain floats keep the products float32 (a numpy float64 would make them float64):
    positions to a hundredth of a pixel, at half the time."""
    (m00, m01), (m10, m11) = np.asarray(m, dtype=float).tolist()
    return m00 * x + m01 * y, m10 * x + m11 * y


class Folder:
    """Folds (a region of) the residual modulo the tile under a given affine map."""

    def __init__(self, r: np.ndarray) -> None:
        self.r = r
        self.ys, self.xs = grid(r.shape)
        self._x, self._y = self.xs[0], self.ys[:, :1]
        self._w = r.ravel().astype(np.float64)  # bincount's weight type: converted once

    def index(self, m: np.ndarray) -> np.ndarray:
        """Tile position (row-major) of every residual pixel under inverse map m."""
        a, b = mapped(m, self._x, self._y)
        # TILE is a power of two: & is the modulo, also for negative positions (two's complement)
        a = np.rint(a, out=a).astype(np.int32)
        a &= TILE - 1
        b = np.rint(b, out=b).astype(np.int32)
        b &= TILE - 1
        b *= TILE
        b += a
        return b.ravel()

    @functools.cached_property
    def moments(self) -> tuple[np.ndarray, ...]:
        """The residual weighted by 1, x, y, x², xy, y² (centred, for conditioning): what the
        Newton step folds; the same for every step on this residual."""
        xs = (self.xs - self.xs.mean()).ravel()
        ys = (self.ys - self.ys.mean()).ravel()
        r = self.r.ravel()
        weights = (r, r * xs, r * ys, r * xs * xs, r * xs * ys, r * ys * ys)
        return tuple(w.astype(np.float64) for w in weights)

    @staticmethod
    def fold(idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        # A sum, not a mean: tile positions seen more often (partial periods after a crop)
        # deserve proportionally more weight; this is the matched filter.
        tile = np.bincount(idx, weights=weights, minlength=TILE * TILE).reshape(TILE, TILE)
        return data_bins(tile)

    def bins(self, m: np.ndarray) -> np.ndarray:
        return self.fold(self.index(m), self._w)


def _ring_power(bins: np.ndarray) -> np.ndarray:
    total = np.bincount(BIN_CLASS, weights=bins.real**2 + bins.imag**2, minlength=_N_CLASS)
    return total / np.maximum(np.bincount(BIN_CLASS, minlength=_N_CLASS), 1) + 1e-12


def _pilot_peak(
    bins: np.ndarray, layout: KeyedLayout, band: np.ndarray = _FULL_BAND
) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    """The pilot peak's z-score, and what `_pilot_offset` needs to place it sub-pixel.

    Split from the offset because most peaks are only compared: the Newton refinement is paid
    for the winner alone.
    """
    g = bins * np.conj(layout.pilot_bins) / _ring_power(bins)[BIN_CLASS] * band
    # the correlation is real: its spectrum is Hermitian, and the inverse real FFT needs only
    # the half kx >= 0, where the bins are (plus the mirror of those on the kx = 0 column)
    half = np.zeros((TILE, TILE // 2 + 1), complex)
    half[BIN_Y, BIN_X] = g
    half[(-BIN_Y[_ON_AXIS]) % TILE, 0] = np.conj(g[_ON_AXIS])
    corr = np.fft.irfft2(half, s=(TILE, TILE))
    oy, ox = np.unravel_index(np.argmax(corr), corr.shape)
    z = float((corr[oy, ox] - corr.mean()) / (corr.std() + 1e-12))
    return z, (g, np.array([float(oy), float(ox)]))


def _pilot_offset(peak: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Cyclic offset (dy, dx) of the pilot in a folded tile: Newton on Re Σ g·e^{i k·d}."""
    g, d = peak
    ky, kx = 2 * np.pi * BIN_KY / TILE, 2 * np.pi * BIN_KX / TILE
    for _ in range(3):
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
    return d


def _newton_step(
    folder: Folder, reg: Registration, layout: KeyedLayout, band: np.ndarray
) -> np.ndarray | None:
    """One Newton step on the pilot correlation over all six affine parameters.

    J(m, d) = Σ_x r(x)·Q(m·x − d), with Q the ring-whitened pilot template in tile space. Its
    gradient and Hessian need only six weighted folds of the residual (weights 1, x, y, x², xy,
    y²) evaluated at the pilot's Fourier bins, so one step costs about one fold per parameter.
    """
    m = reg.inverse_map
    idx = folder.index(m)
    f1, fx, fy, fxx, fxy, fyy = (folder.fold(idx, wt) for wt in folder.moments)
    # c_k = conj(Q_k)·e^{iκ·d}; the offset here is the plain (uncentred) one
    kappa = (2 * np.pi * BIN_KX / TILE, 2 * np.pi * BIN_KY / TILE)  # tile x, tile y
    theta = kappa[0] * reg.offset[1] + kappa[1] * reg.offset[0]
    c = np.conj(layout.pilot_bins) / reg.ring_power[BIN_CLASS] * np.exp(1j * theta) * band
    # the centred coordinates shift the offset: u = m·x' − (d − m·x̄); fold weights use x'
    fold_b = (fx, fy)
    fold_be = ((fxx, fxy), (fxy, fyy))

    def s(z: np.ndarray) -> float:
        return float(np.sum((z * c).real))

    params = [(0, 0), (0, 1), (1, 0), (1, 1)]  # m[a, b]
    grad = np.zeros(6)
    hess = np.zeros((6, 6))
    for i, (ai, bi) in enumerate(params):
        grad[i] = s(fold_b[bi] * (-1j * kappa[ai]))
        for j, (aj, bj) in enumerate(params):
            hess[i, j] = s(fold_be[bi][bj] * (-kappa[ai] * kappa[aj]))
        for cj in range(2):
            hess[i, 4 + cj] = hess[4 + cj, i] = -s(fold_b[bi] * (-kappa[ai] * kappa[cj]))
    for ci in range(2):
        grad[4 + ci] = -s(f1 * (-1j * kappa[ci]))
        for cj in range(2):
            hess[4 + ci, 4 + cj] = s(f1 * (-kappa[ci] * kappa[cj]))
    # The centred parametrisation changes the offset's meaning but not the Hessian's shape: an
    # offset gradient taken at the centred origin. Solve, and keep only the map update.
    h_damped = hess + 0.05 * np.diag(np.diag(hess))
    try:
        eig = np.linalg.eigvalsh(h_damped)
        if eig.max() >= 0:
            return None
        step = -np.linalg.solve(h_damped, grad)
    except np.linalg.LinAlgError:
        return None
    dm = step[:4].reshape(2, 2)
    if np.abs(dm).max() * max(folder.r.shape) > 4:  # more than a few pixels: not a local fix
        return None
    return m + dm


def register(folder: Folder, pose: Pose, layouts: Sequence[KeyedLayout]) -> Registration:
    """The cyclic offset from the pilot, and how high the pilot peaks (`sharpen` refines it).

    Of several layouts (v1 and v2 under one key), the one whose pilot peaks highest is kept:
    the fold is shared, only the pilot correlation is repeated.
    """
    best = None
    starts = [pose.inverse_map()]
    if pose.matrix is not None and not pose.general:  # the peak fit is usually better, not always
        starts.append(Pose(pose.scale, pose.angle, pose.score, pose.mirror).inverse_map())
    for m in starts:
        bins = folder.bins(m)
        # the half turn: folding under -m reflects the tile, whose spectrum is the conjugate
        for mm, bb in ((m, bins), (-m, np.conj(bins))):
            for layout in layouts:
                z, peak = _pilot_peak(bb, layout)
                if best is None or z > best[0]:
                    best = (z, peak, mm, bb, layout)
    assert best is not None
    z, peak, mm, bb, layout = best
    return Registration(mm, _pilot_offset(peak), bb, _ring_power(bb), z, layout)


def sharpen(folder: Folder, best: Registration, iterations: int = 3) -> Registration:
    """Newton on the whole affine map while the pilot peak grows."""
    if best.z < POSE_Z:  # no pilot here: a wrong pose, or none left to register on
        return best
    layout = best.layout
    # Coarse to fine: steps computed on the low half of the band first, which a drift of a
    # couple of pixels across the image does not yet scramble, then on the whole band. A step is
    # kept only if the full pilot peak grows.
    for band in (_LOW_BAND, _FULL_BAND):
        for _ in range(iterations):
            stepped = _newton_step(folder, best, layout, band)
            if stepped is None:
                break
            bins = folder.bins(stepped)
            z, peak = _pilot_peak(bins, layout)
            if z <= best.z:
                break
            best = Registration(stepped, _pilot_offset(peak), bins, _ring_power(bins), z, layout)
    return best


def identity(folder: Folder, layout: KeyedLayout) -> Registration:
    """The working grid taken as it is: no scale, turn or crop since the image was marked.

    The pilot may refine the offset by a fraction of a pixel (resampling conventions), but is
    not needed: a copy stripped of its pilot is read at offset zero.
    """
    m = np.eye(2)
    bins = folder.bins(m)
    z, peak = _pilot_peak(bins, layout)
    offset = _pilot_offset(peak)
    wrapped = (offset + TILE / 2) % TILE - TILE / 2
    if z < PILOT_Z or np.abs(wrapped).max() > 0.5:  # no pilot to trust: the grid as it is
        wrapped = np.zeros(2)
    return Registration(m, wrapped, bins, _ring_power(bins), z, layout)


# ---- 3. soft chips ------------------------------------------------------------------------------
def chip_weights(reg: Registration, layout: KeyedLayout, group: int = 3) -> np.ndarray:
    """v1: per-chip weight, the signal-to-noise ratio of its frequency ring measured on the pilots.

    A blur or JPEG that wiped out the top of the band thereby gets less say in the decision.
    """
    soft = _chips(reg.bins, reg)
    ring_group = CHIP_CLASS // group
    pil = layout.pilot_idx
    n = int(ring_group.max()) + 1
    # with weights, bincount sums floats (numpy's stubs type every bincount as integers)
    signal: np.ndarray = np.bincount(
        ring_group[pil], weights=soft[pil] * layout.pilot_sign, minlength=n
    )
    signal /= np.maximum(np.bincount(ring_group[pil], minlength=n), 1)
    scale = np.sqrt(np.mean(soft**2)) + 1e-12
    return np.maximum(signal / scale, 0.02)[ring_group] / scale


def _chips(bins: np.ndarray, reg: Registration) -> np.ndarray:
    """Offset-corrected, noise-normalised chips (real parts, then imaginary parts)."""
    phase = np.exp(2j * np.pi * (BIN_KY * reg.offset[0] + BIN_KX * reg.offset[1]) / TILE)
    c = bins * phase / np.sqrt(reg.ring_power[BIN_CLASS])
    return np.concatenate([c.real, c.imag])


def soft_chips(reg: Registration, layout: KeyedLayout) -> np.ndarray:
    """Every chip's soft value of the folded tile (v1: the whole mark repeats), SNR-weighted."""
    return _chips(reg.bins, reg) * chip_weights(reg, layout)
