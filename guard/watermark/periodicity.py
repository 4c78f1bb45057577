"""A squashed copy's geometry from the whole lattice: a pose that needs no sync peaks.

Everything that repeats from tile to tile (the pilots, and the sync when it is there) puts power
at the lattice's frequencies. An attacker who notches the 16 public sync peaks away leaves the
224 pilot bins, and their summed power still says how each axis was scaled. Only the geometry
near the untouched one is searched (each axis ×0.70–1.18 of its working length): the working
resolution already undoes an overall resize, and the sync search covers turns and large scales.
The pose costs the p-value nothing of its own: it competes with the sync search's poses for
the same registration slots.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from guard.watermark.layout import TILE

# The inverse map's diagonal: tile pixels per working pixel, per axis. The working resolution
# scales the short side to 512, so a crop before or after the squash scales both axes again: a
# crop to 85% and ×1.10 horizontally is 0.77 on x (the lower end was 0.85, and dense textures,
# whose sync peaks are too weak to fit the squash from, were lost: 3 of 5 such misses found now).
AXIS_RANGE = (0.70, 1.18)
STEP = 0.004  # relative grid step: half a bin at the outermost pilot ring of a 512 px side
_ROWS = 8


def candidate_maps(
    ratio: np.ndarray, shape: tuple[int, int], lattice: np.ndarray, k: int
) -> list[np.ndarray]:
    """The k axis-aligned inverse maps diag(a, b) under which the lattice's power peaks most
    (distinct local maxima of the search grid, best first).

    Each lattice frequency is read at its nearest bin (a pilot is one bin wide: summing a
    neighbourhood would add noise, not signal), on a grid fine enough for the outermost ring;
    the frequency's x bin depends on a alone and its y bin on b alone, so the table of bins is
    computed per axis.
    """
    h, w = shape
    n = math.ceil(math.log(AXIS_RANGE[1] / AXIS_RANGE[0]) / STEP) + 1
    axis = np.exp(np.linspace(math.log(AXIS_RANGE[0]), math.log(AXIS_RANGE[1]), n))
    half = np.where(lattice[:, :1] < 0, -1.0, 1.0) * lattice  # the rfft keeps kx >= 0
    ph, pw = ratio.shape
    xs = np.clip(np.rint(axis[:, None] * half[:, 0] / TILE * w).astype(np.int32), 0, pw - 1)
    ys = np.rint(axis[:, None] * half[:, 1] / TILE * h).astype(np.int32) + h // 2
    ys = np.clip(ys, 0, ph - 1) * np.int32(pw)
    values = ratio.ravel()
    score = np.empty((n, n), np.float32)
    # [a, b, frequency]: one flat lookup each, a few rows of a at a time (the whole table is
    # 30 MB, and fresh memory that size cost a process's first detect 100 ms)
    for a in range(0, n, _ROWS):
        flat = ys[None, :, :] + xs[a : a + _ROWS, None, :]
        score[a : a + _ROWS] = np.take(values, flat).sum(-1) - len(lattice)
    peaks = np.argwhere((score == cv2.dilate(score, np.ones((3, 3), np.uint8))) & (score > 0))
    chosen: list[np.ndarray] = []
    for p in peaks[np.argsort(-score[peaks[:, 0], peaks[:, 1]])]:
        if all(np.abs(p - c).max() > 3 for c in chosen):  # one per hill: plateaus tie
            chosen.append(p)
            if len(chosen) == k:
                break
    return [np.diag([float(axis[i]), float(axis[j])]) for i, j in chosen]
