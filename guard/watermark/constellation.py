"""The sync template found peak by peak: a general affine pose (squash, stretch, shear).

`sync`'s grid search covers rotation and one scale. A copy whose axes were scaled differently
(a 4:5 crop resized to a square, a stretched thumbnail) or sheared moves each sync peak by up to
a tenth of its radius, far off that grid. Here the strongest spectral maxima are matched to the
template directly: every pair of template peaks against every pair of maxima fixes a 2×2 map,
the plausible maps (bounded squash and turn) are scored on all 16 peaks, and the best are
refined on the peaks they light up. Nothing here is keyed: it costs the p-value nothing, only
the registrations that follow do.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from guard.watermark.layout import SYNC_K, TILE

N_MAXIMA = 22  # spectral maxima tried as sync peaks (the rest are image content)
MIN_RATIO = 5.0  # a maximum weaker than this against its neighbourhood is not a peak
MAX_SQUASH = 1.28  # largest ratio of the map's singular values (0.88 against 1.12, or ±7° shear)
MAX_TURN = math.radians(12)  # distance of the rotation from a quarter turn
SCALE_RANGE = (0.55, 2.2)

# Every ordered pair of distinct template peaks, and the inverse of the matrix they form.
_J1, _J2 = (a.ravel() for a in np.meshgrid(np.arange(16), np.arange(16), indexing="ij"))
_PAIRS = _J1 != _J2
_J1, _J2 = _J1[_PAIRS], _J2[_PAIRS]
_K2 = np.stack([SYNC_K[_J1], SYNC_K[_J2]], 1).astype(float)  # [pair, row, (kx, ky)]
_WELL_POSED = np.abs(np.linalg.det(_K2)) > 60  # peaks at least ~10° apart
_J1, _J2, _K2 = _J1[_WELL_POSED], _J2[_WELL_POSED], _K2[_WELL_POSED]
_K2_INV = np.linalg.inv(_K2)
_K1V, _K2V = SYNC_K[_J1].astype(float), SYNC_K[_J2].astype(float)
_LENGTH_K = np.log(np.hypot(*_K2V.T) / np.hypot(*_K1V.T))
_TURN_K = np.arctan2(_K2V[:, 1], _K2V[:, 0]) - np.arctan2(_K1V[:, 1], _K1V[:, 0])
_LENGTH_TOL = math.log(MAX_SQUASH)  # what the squash can do to a length ratio, at most
_TURN_TOL = math.atan((MAX_SQUASH - 1 / MAX_SQUASH) / 2)  # ... and to an angle between two


def maxima(ratio: np.ndarray, shape: tuple[int, int], n: int = N_MAXIMA) -> np.ndarray:
    """The n strongest local maxima of the normalised power spectrum that could be sync peaks,
    as frequencies in tile units (cycles per tile under the identity map), in the kx >= 0 half."""
    h, w = shape
    dil = cv2.dilate(ratio, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero((ratio >= dil) & (ratio >= MIN_RATIO))
    q = np.stack([xs / w * TILE, (ys - h // 2) / h * TILE], 1)
    radius = np.hypot(q[:, 0], q[:, 1])
    k_radius = np.hypot(SYNC_K[:, 0], SYNC_K[:, 1])
    lo = k_radius.min() / SCALE_RANGE[1] / math.sqrt(MAX_SQUASH)
    hi = k_radius.max() / SCALE_RANGE[0] * math.sqrt(MAX_SQUASH)
    keep = (radius >= lo) & (radius <= hi)
    q, ys, xs = q[keep], ys[keep], xs[keep]
    order = np.argsort(-ratio[ys, xs])[:n]
    return q[order]


def plausible(maps: np.ndarray) -> np.ndarray:
    """Which 2×2 inverse maps are a bounded squash and turn of the tile (mirror allowed)."""
    det = maps[:, 0, 0] * maps[:, 1, 1] - maps[:, 0, 1] * maps[:, 1, 0]
    mirror = det < 0
    m = maps.copy()
    m[mirror, :, 0] *= -1  # undo a left-right flip of the image: the x column changes sign
    a, b, c, d = m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1]
    # singular values of [[a, b], [c, d]] in closed form
    s1 = np.hypot(a + d, b - c) / 2
    s2 = np.hypot(a - d, b + c) / 2
    big, small = s1 + s2, np.abs(s1 - s2)
    turn = np.arctan2(b - c, a + d)
    off_quarter = np.abs((turn + math.pi / 4) % (math.pi / 2) - math.pi / 4)
    scale = 1 / np.sqrt(np.maximum(np.abs(det), 1e-12))
    return (
        (small > 0)
        & (big <= MAX_SQUASH * small)
        & (off_quarter <= MAX_TURN)
        & (scale >= SCALE_RANGE[0])
        & (scale <= SCALE_RANGE[1])
    )


def score_maps(
    ratio: np.ndarray, shape: tuple[int, int], maps: np.ndarray, lattice: np.ndarray | None = None
) -> np.ndarray:
    """Summed normalised power (less 1, its mean without a mark) at the sync peaks, or at every
    frequency of `lattice` ([n, (kx, ky)]), under each inverse map."""
    return _terms(ratio, shape, maps, SYNC_K if lattice is None else lattice).sum(-1)


_STEPS = np.stack(np.meshgrid(*[np.array([-1.0, 0.0, 1.0])] * 4, indexing="ij"), -1)
_STEPS = _STEPS.reshape(-1, 2, 2)  # every relative change of the four entries by -1, 0 or +1


def lattice_refine(
    ratio: np.ndarray, shape: tuple[int, int], maps: np.ndarray, lattice: np.ndarray
) -> np.ndarray:
    """Sharpen general maps ([n, 2, 2]) on the power at every periodic bin of the tile's lattice.

    Each map's four entries are searched jointly on a shrinking grid of relative changes:
    hundreds of weak pilot bins pin the map down far better than the 16 sync peaks (a squash
    read 0.6% off from the peaks alone leaves too much drift across the picture to register).
    All maps are searched in one batch per step.
    """
    n = len(maps)
    for span in (0.006, 0.003, 0.0015, 0.0007):
        trial = maps[:, None] @ (np.eye(2) + span * _STEPS)[None]  # [map, change, 2, 2]
        scores = score_maps(ratio, shape, trial.reshape(-1, 2, 2), lattice).reshape(n, -1)
        maps = trial[np.arange(n), np.argmax(scores, 1)]
    return maps


def _terms(ratio: np.ndarray, shape: tuple[int, int], maps: np.ndarray, k: np.ndarray):
    # float32 throughout (as the spectrum is): bins to a few thousandths, at half the time of
    # float64 over hundreds of thousands of lookups
    h, w = shape
    kx, ky = k[:, 0].astype(np.float32), k[:, 1].astype(np.float32)
    m = maps[:, None].astype(np.float32)  # f = k @ m, per map: [map, frequency]
    fx = (kx * m[..., 0, 0] + ky * m[..., 1, 0]) * np.float32(w / TILE)
    fy = (kx * m[..., 0, 1] + ky * m[..., 1, 1]) * np.float32(h / TILE)
    flip = fx < 0  # the rfft keeps kx >= 0: f and -f are the same peak
    np.negative(fx, out=fx, where=flip)
    np.negative(fy, out=fy, where=flip)
    fy += h // 2
    ph, pw = ratio.shape
    # the 2×2 cell's corner, kept inside the array (as clipping each corner would, except at
    # the very edge, where no sync or pilot frequency of a plausible pose falls)
    x0 = np.clip(np.floor(fx), 0, pw - 2)
    y0 = np.clip(np.floor(fy), 0, ph - 2)
    ax, ay = np.clip(fx - x0, 0, 1), np.clip(fy - y0, 0, 1)
    flat = ratio.ravel()
    i = (y0 * pw + x0).astype(np.intp)
    top = flat[i] * (1 - ax) + flat[i + 1] * ax
    bottom = flat[i + pw] * (1 - ax) + flat[i + pw + 1] * ax
    return top * (1 - ay) + bottom * ay - 1.0


def candidate_maps(ratio: np.ndarray, shape: tuple[int, int], k: int) -> list[np.ndarray]:
    """The k best-scoring distinct inverse maps that carry two template peaks onto two maxima."""
    q = maxima(ratio, shape)
    n = len(q)
    if n < 2:
        return []
    # Observed pairs: a first maximum as it is (the map's sign is free: registration tries ±m),
    # a second one with either sign (the power spectrum cannot tell f from -f).
    a, b = (x.ravel() for x in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    a, b = a[a != b], b[a != b]
    qa = np.concatenate([q[a], q[a]])
    qb = np.concatenate([q[b], -q[b]])
    # A bounded squash keeps the pair's length ratio and the angle between them roughly as in
    # the template (the angle flips sign in a mirror image): a cheap test before any 2×2 solve.
    length_q = np.log(np.hypot(qb[:, 0], qb[:, 1]) / np.hypot(qa[:, 0], qa[:, 1]))
    turn_q = np.arctan2(qb[:, 1], qb[:, 0]) - np.arctan2(qa[:, 1], qa[:, 0])
    t, o = np.nonzero(np.abs(length_q[None, :] - _LENGTH_K[:, None]) <= _LENGTH_TOL)
    turn_t, turn_o = _TURN_K[t], turn_q[o]  # the angle test only where the lengths agree
    same = np.abs(_wrap(turn_o - turn_t)) <= _TURN_TOL
    flipped = np.abs(_wrap(turn_o + turn_t)) <= _TURN_TOL
    t, o = t[same | flipped], o[same | flipped]
    if not len(t):
        return []
    kinv, qa, qb = _K2_INV[t], qa[o], qb[o]
    # m = K⁻¹ Q for K = [k1; k2] (template rows) and Q = [qa; qb]
    maps = np.empty((len(t), 2, 2))
    for col in (0, 1):
        maps[:, 0, col] = kinv[:, 0, 0] * qa[:, col] + kinv[:, 0, 1] * qb[:, col]
        maps[:, 1, col] = kinv[:, 1, 0] * qa[:, col] + kinv[:, 1, 1] * qb[:, col]
    maps = maps[plausible(maps)]
    if not len(maps):
        return []
    scores = score_maps(ratio, shape, maps)
    chosen: list[np.ndarray] = []
    for i in np.argsort(-scores)[: 20 * k]:
        m = maps[i]
        if all(distinct(m, c) for c in chosen):
            chosen.append(m)
            if len(chosen) == k:
                break
    return chosen


def distinct(m: np.ndarray, c: np.ndarray) -> bool:
    """Whether two inverse maps are different poses (m and -m are the same one)."""
    return bool(min(np.abs(m - c).max(), np.abs(m + c).max()) > 0.01 * np.abs(c).max())


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + math.pi) % (2 * math.pi) - math.pi
