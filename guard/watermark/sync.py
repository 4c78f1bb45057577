"""Finding the tile again: scale and angle from the sync peaks, then offset and fine geometry
from the pilot chips, then the soft value of every chip.

1. `residual` whitens the working-resolution luma: a 7×7 median removes edges and flat colour, a
   high-pass removes what is left of the low frequencies, and a local contrast normalisation keeps
   strong texture from drowning the rest of the image.
2. `sync_candidates` searches scale (0.6–2×), angle (±10° around each quarter turn) and
   mirroring for the pose under which the sync template's 16 peaks light up in the residual's
   power spectrum (each bin normalised by its neighbourhood, so only peaks count), then fits a
   full 2×2 map to the individually located peaks.
3. `register` folds the residual modulo the estimated lattice into one tile, finds the cyclic
   offset by correlating with the pilot chips (sub-pixel, Newton on the correlation peak), then
   takes Newton steps on all six affine parameters — a drift of a fraction of a pixel across the
   image is enough to scramble the high-frequency chips.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from guard.watermark.layout import (
    BIN_CLASS,
    BIN_KX,
    BIN_KY,
    BIN_RING,
    BIN_X,
    BIN_Y,
    CHIP_CLASS,
    SYNC_K,
    TILE,
    KeyedLayout,
)

SCALE_RANGE = (0.6, 2.0)
# A pilot peak this many standard deviations above all 16,384 offsets is no accident (noise
# peaks at about 4-4.5); below it the pose or offset it suggests is not trusted.
PILOT_Z = 5.0
POSE_Z = 4.5  # below this a pose is not refined or decoded (the p-value still pays for it)
MAX_ANGLE = math.radians(10)
_N_CLASS = int(BIN_CLASS.max()) + 1
_LOW_BAND = (BIN_RING <= 17).astype(float)  # coarse registration: tolerates ~2 px of drift
_FULL_BAND = np.ones(len(BIN_RING))


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
        total = 0.0
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
    h, w = spec.shape
    kx, ky = SYNC_K[:, 0].astype(float), SYNC_K[:, 1].astype(float)
    s, a = np.meshgrid(scales, angles, indexing="ij")
    c, sn = np.cos(a)[..., None], np.sin(a)[..., None]
    fx = (c * kx - sn * ky) / (TILE * s[..., None]) * w  # in FFT bins
    fy = (sn * kx + c * ky) / (TILE * s[..., None]) * h
    if mirror:
        fx = -fx
    flip = fx < 0  # rfft keeps one half-plane; the other is its mirror
    fx, fy = np.where(flip, -fx, fx), np.where(flip, -fy, fy) + h // 2
    x0, y0 = np.floor(fx).astype(int), np.floor(fy).astype(int)
    ph, pw = spec.ratio.shape
    if not bilinear:
        return (spec.cells[np.clip(y0, 0, ph - 1), np.clip(x0, 0, pw - 1)] - 4.0).sum(-1)
    ax, ay = fx - x0, fy - y0
    total = 0.0
    for dy in (0, 1):
        for dx in (0, 1):
            v = spec.ratio[np.clip(y0 + dy, 0, ph - 1), np.clip(x0 + dx, 0, pw - 1)]
            total = total + v * (ax if dx else 1 - ax) * (ay if dy else 1 - ay)
    return (total - 1.0).sum(-1)


def sync_candidates(r: np.ndarray, k: int, lattice_bins: np.ndarray | None = None) -> list[Pose]:
    """The k most likely poses, best first. `lattice_bins`: the data bins that repeat in every
    tile (a layout's pilot bins), for the final refinement; default all of them (v1)."""
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
    return [_refine_affine(spec, _lattice_refine(spec, p, lattice)) for p in poses[:k]]


# ---- 2. offset and fine geometry --------------------------------------------------------------
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


class _Folder:
    """Folds (a region of) the residual modulo the tile under a given affine map."""

    def __init__(self, r: np.ndarray) -> None:
        self.r = r
        self.ys, self.xs = grid(r.shape)

    def index(self, m: np.ndarray) -> np.ndarray:
        """Tile position (row-major) of every residual pixel under inverse map m."""
        a = np.rint(m[0, 0] * self.xs + m[0, 1] * self.ys).astype(np.int64) % TILE
        b = np.rint(m[1, 0] * self.xs + m[1, 1] * self.ys).astype(np.int64) % TILE
        return (b * TILE + a).ravel()

    @staticmethod
    def fold(idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        # A sum, not a mean: tile positions seen more often (partial periods after a crop)
        # deserve proportionally more weight; this is the matched filter.
        tile = np.bincount(idx, weights=weights, minlength=TILE * TILE).reshape(TILE, TILE)
        return np.fft.fft2(tile)[BIN_Y, BIN_X]

    def bins(self, m: np.ndarray) -> np.ndarray:
        return self.fold(self.index(m), self.r.ravel())


def _ring_power(bins: np.ndarray) -> np.ndarray:
    total = np.bincount(BIN_CLASS, weights=bins.real**2 + bins.imag**2, minlength=_N_CLASS)
    return total / np.maximum(np.bincount(BIN_CLASS, minlength=_N_CLASS), 1) + 1e-12


def _pilot_offset(
    bins: np.ndarray, layout: KeyedLayout, band: np.ndarray = _FULL_BAND
) -> tuple[np.ndarray, float]:
    """Cyclic offset (dy, dx) of the pilot in a folded tile, and the peak's z-score."""
    g = bins * np.conj(layout.pilot_bins) / _ring_power(bins)[BIN_CLASS] * band
    full = np.zeros((TILE, TILE), complex)
    full[BIN_Y, BIN_X] = g
    full[(-BIN_Y) % TILE, (-BIN_X) % TILE] = np.conj(g)
    corr = np.fft.ifft2(full).real
    oy, ox = np.unravel_index(np.argmax(corr), corr.shape)
    z = float((corr[oy, ox] - corr.mean()) / (corr.std() + 1e-12))
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


def _newton_step(
    folder: _Folder, reg: Registration, layout: KeyedLayout, band: np.ndarray
) -> np.ndarray | None:
    """One Newton step on the pilot correlation over all six affine parameters.

    J(m, d) = Σ_x r(x)·Q(m·x − d), with Q the ring-whitened pilot template in tile space. Its
    gradient and Hessian need only six weighted folds of the residual (weights 1, x, y, x², xy,
    y²) evaluated at the pilot's Fourier bins, so one step costs about one fold per parameter.
    """
    m = reg.inverse_map
    idx = folder.index(m)
    xs = (folder.xs - folder.xs.mean()).ravel()  # centred, for conditioning
    ys = (folder.ys - folder.ys.mean()).ravel()
    r = folder.r.ravel()
    weights = (r, r * xs, r * ys, r * xs * xs, r * xs * ys, r * ys * ys)
    f1, fx, fy, fxx, fxy, fyy = (folder.fold(idx, wt) for wt in weights)
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


def register(
    r: np.ndarray, pose: Pose, layouts: Sequence[KeyedLayout], iterations: int = 3
) -> Registration:
    """Offset from the pilot, then Newton on the whole affine map while the pilot peak grows.

    Of several layouts (v1 and v2 under one key), the one whose pilot peaks highest is kept:
    the fold is shared, only the pilot correlation is repeated.
    """
    folder = _Folder(r)
    best = None
    starts = [pose.inverse_map()]
    if pose.matrix is not None:  # the peak-by-peak fit is usually better, but not always
        starts.append(Pose(pose.scale, pose.angle, pose.score, pose.mirror).inverse_map())
    for m in starts:
        bins = folder.bins(m)
        # the half turn: folding under -m reflects the tile, whose spectrum is the conjugate
        for mm, bb in ((m, bins), (-m, np.conj(bins))):
            for layout in layouts:
                offset, z = _pilot_offset(bb, layout)
                if best is None or z > best.z:
                    best = Registration(mm, offset, bb, _ring_power(bb), z, layout)
    assert best is not None
    layout = best.layout
    if best.z < POSE_Z:  # no pilot here: a wrong pose, or none left to register on
        return best
    # Coarse to fine: steps computed on the low half of the band first, which a drift of a
    # couple of pixels across the image does not yet scramble, then on the whole band. A step is
    # kept only if the full pilot peak grows.
    for band in (_LOW_BAND, _FULL_BAND):
        for _ in range(iterations):
            m = _newton_step(folder, best, layout, band)
            if m is None:
                break
            bins = folder.bins(m)
            offset, z = _pilot_offset(bins, layout)
            if z <= best.z:
                break
            best = Registration(m, offset, bins, _ring_power(bins), z, layout)
    return best


def identity(r: np.ndarray, layout: KeyedLayout) -> Registration:
    """The working grid taken as it is: no scale, turn or crop since the image was marked.

    The pilot may refine the offset by a fraction of a pixel (resampling conventions), but is
    not needed: a copy stripped of its pilot is read at offset zero.
    """
    m = np.eye(2)
    bins = _Folder(r).bins(m)
    offset, z = _pilot_offset(bins, layout)
    wrapped = (offset + TILE / 2) % TILE - TILE / 2
    if z < PILOT_Z or np.abs(wrapped).max() > 1.0:  # no pilot to trust: the grid as it is
        wrapped = np.zeros(2)
    return Registration(m, wrapped, bins, _ring_power(bins), z, layout)


# ---- 3. soft chips ------------------------------------------------------------------------------
def chip_weights(reg: Registration, layout: KeyedLayout, group: int = 3) -> np.ndarray:
    """Per-chip weight: the signal-to-noise ratio of its frequency ring, measured on the pilots.

    A blur or JPEG that wiped out the top of the band thereby gets less say in the decision.
    """
    soft = _chips(reg.bins, reg)
    ring_group = CHIP_CLASS // group
    pil = layout.pilot_idx
    n = int(ring_group.max()) + 1
    signal = np.bincount(ring_group[pil], weights=soft[pil] * layout.pilot_sign, minlength=n)
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
