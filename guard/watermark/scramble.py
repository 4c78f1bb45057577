"""Mark v2: the payload changes from tile to tile, so nothing an attacker can average reveals it.

A v1 mark is one tile repeated: folding a single marked image modulo the (public) period
estimates the whole tile without the key, and subtracting that estimate removes the mark.
In v2 every payload chip of the tile at grid position (i, j) is multiplied by a keyed sign
`S[(i mod 4, j mod 4), chip]`. What stays periodic is only what the detector needs to find the
geometry: the public sync template and the keyed pilot chips.

* Folding one image modulo the tile period: each payload chip's 16 signs are balanced (8 of
  each), so the payload folds to exactly zero. The fold estimates the sync and pilots only.
* Averaging many images marked under one key: payloads are random IDs, so they average to zero
  whatever the scramble; again only the sync and pilots survive.
* Removing the sync and pilots breaks geometric resynchronisation, but not detection of a copy
  whose geometry was left alone: the detector always also tries the *identity* pose (working
  grid as is, zero offset), which needs neither (see engine.detect).

The detector, once it knows the pose and sub-tile offset, folds the residual per grid slot
(16 folds instead of one), undoes the signs for each of the 16 possible slot alignments `delta`
(a crop moves the grid origin by whole tiles too) and ranks them by the energy of the
unscrambled payload; every alignment counts in the p-value's union bound.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from typing import overload

import numpy as np

from guard.watermark.layout import (
    BIN_CLASS,
    BIN_KX,
    BIN_KY,
    TILE,
    KeyedLayout,
    data_bins,
)

SUPER = 4  # the scramble repeats every SUPER tiles: one period covers 512 working pixels
N_SLOT = SUPER * SUPER
DELTAS = [(dy, dx) for dy in range(SUPER) for dx in range(SUPER)]


@functools.lru_cache(maxsize=8)
def signs(key: bytes, n_payload: int) -> np.ndarray:
    """[N_SLOT, n_payload] keyed ±1, each column balanced (as many +1 as -1)."""
    seed = hmac.new(key, b"guard.watermark.v2 scramble", hashlib.sha256).digest()
    rng = np.random.default_rng(int.from_bytes(seed[:16], "big"))
    base = np.repeat([1.0, -1.0], N_SLOT // 2)
    return rng.permuted(np.tile(base[:, None], (1, n_payload)), axis=0)


@overload
def slot_of(ty: int, tx: int) -> int: ...
@overload
def slot_of(ty: np.ndarray, tx: np.ndarray) -> np.ndarray: ...
def slot_of(ty: np.ndarray | int, tx: np.ndarray | int) -> np.ndarray | int:
    """Grid slot of tile row ty, tile column tx (any integers, negative included)."""
    return (ty % SUPER) * SUPER + (tx % SUPER)


def pattern(tiles: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Lay the N_SLOT tiles ([N_SLOT, TILE, TILE]) over a working-resolution image."""
    ys, xs = np.arange(shape[0])[:, None], np.arange(shape[1])[None, :]
    return tiles[slot_of(ys // TILE, xs // TILE), ys % TILE, xs % TILE]


@dataclass(frozen=True)
class SlotFold:
    """The residual folded per grid slot: complex data bins, [N_SLOT, N_BIN], offset-corrected
    and divided by their noise class's level, ready to be read as chips."""

    bins: np.ndarray
    counts: np.ndarray  # pixels that fell into each slot (0 for slots the image never reached)


def fold_slots(
    r: np.ndarray, inverse_map: np.ndarray, offset: np.ndarray, ring_power: np.ndarray
) -> SlotFold:
    """Fold the residual modulo the tile, separately for each of the N_SLOT grid slots.

    `inverse_map` and `offset` are a registration's (register.Registration): tile coordinates are
    u = m·x − offset, so the grid slot of a pixel is floor(u / TILE), known up to a whole-tile
    shift that `delta` resolves later.
    """
    if np.array_equal(inverse_map, np.eye(2)) and np.abs(offset).max() <= 0.5:
        folded, counts = _fold_in_place(r)
    else:
        folded, counts = _fold_mapped(r, inverse_map, offset)
    spec = data_bins(folded.reshape(N_SLOT, TILE, TILE))
    phase = np.exp(2j * np.pi * (BIN_KY * offset[0] + BIN_KX * offset[1]) / TILE)
    return SlotFold(spec * phase / np.sqrt(ring_power[BIN_CLASS]), counts)


def _fold_in_place(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The identity pose: the grid is the image's own, so folding is summing whole blocks."""
    h, w = r.shape
    ny, nx = -(-h // TILE), -(-w // TILE)
    padded = np.zeros((ny * TILE, nx * TILE), np.float64)
    padded[:h, :w] = r
    folded = np.zeros((N_SLOT, TILE, TILE))
    counts = np.zeros(N_SLOT)
    for ty in range(ny):  # a plain loop: np.add.at over the blocks took 8× as long
        for tx in range(nx):
            slot = slot_of(ty, tx)
            folded[slot] += padded[ty * TILE : (ty + 1) * TILE, tx * TILE : (tx + 1) * TILE]
            counts[slot] += min(TILE, h - ty * TILE) * min(TILE, w - tx * TILE)
    return folded.ravel(), counts


def _fold_mapped(
    r: np.ndarray, inverse_map: np.ndarray, offset: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    from guard.watermark.register import grid, mapped

    ys, xs = grid(r.shape)
    ux, uy = mapped(inverse_map, xs[0], ys[:, :1])
    slot = slot_of(
        np.floor((uy - offset[0]) / TILE).astype(np.int32),
        np.floor((ux - offset[1]) / TILE).astype(np.int32),
    )
    # TILE is a power of two: & is the modulo, negative positions included
    idx = slot * (TILE * TILE)
    idx += (np.rint(uy).astype(np.int32) & (TILE - 1)) * TILE
    idx += np.rint(ux).astype(np.int32) & (TILE - 1)
    idx = idx.ravel()
    folded = np.bincount(idx, weights=r.ravel(), minlength=N_SLOT * TILE * TILE)
    return folded, np.bincount(slot.ravel(), minlength=N_SLOT)


def payload_candidates(
    fold: SlotFold, layout: KeyedLayout
) -> list[tuple[float, tuple[int, int], np.ndarray]]:
    """(energy, delta, payload soft values) for every slot alignment, most energetic first.

    The energy of the unscrambled sum is blind to the payload's signs, so it can rank the
    alignments without knowing the ID; the p-value pays for all of them anyway.

    The soft values are the noise-normalised chips as they are, with no signal-to-noise weights:
    weights read off the pilots can be skewed by anyone who inverts or removes the pilots (both
    estimable without the key: the averaging attack did exactly that), and measured over JPEG,
    WebP, blur and the taef2 round trip, unweighted chips decode as well as weighted ones.
    """
    idx = layout.payload_idx
    chips = np.concatenate([fold.bins.real, fold.bins.imag], axis=1)[:, idx]
    chips = chips * layout.payload_sign
    scramble = signs(layout.key, len(idx))
    slots = np.arange(N_SLOT)
    sy, sx = slots // SUPER, slots % SUPER
    out = []
    for dy, dx in DELTAS:
        soft = np.einsum("sc,sc->c", chips, scramble[slot_of(sy + dy, sx + dx)])
        out.append((float(soft @ soft), (dy, dx), soft))
    out.sort(key=lambda c: -c[0])
    return out
