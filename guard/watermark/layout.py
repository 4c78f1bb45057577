"""Where every chip of the mark lives.

The mark is made of small tiles, `TILE` × `TILE` working pixels, laid over the whole image. A tile
is defined by its discrete Fourier spectrum: every bin in a mid-frequency annulus carries two
chips (its real and imaginary parts), and a handful of bins carry a strong, fixed *sync template*.

* What repeats from tile to tile (the sync and the pilots; in v1 the whole tile) lets any crop be
  folded modulo the period so every repetition adds up coherently. v2 scrambles the payload per
  tile (see `scramble`), so only the sync and pilots repeat.
* Because chips are Fourier coefficients of the folded tile, they are orthogonal (no chip leaks
  into another) and the detector can weight each frequency ring by how much image noise it holds.
* The sync bins form a sparse constellation of spectral peaks that survives crops, rescales and
  small rotations, so the detector can measure scale and angle before it reads any chip.

The key decides which chips are pilots (known ±1, used to find the tile's offset) and which carry
the payload, and flips each chip's sign (whitening), so marks made with different keys look like
unrelated noise to each other.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

import numpy as np

TILE = 128  # tile period, in working pixels
WORK_SIDE = 512  # working resolution: the image's short side is mapped to this many pixels
BAND = (0.08, 0.22)  # chip band, cycles per working pixel

# --- the data bins: one half of the annulus (the other half is the complex conjugate) ----------
_f = np.fft.fftfreq(TILE)
_fx, _fy = np.meshgrid(_f, _f)  # [row = ky, col = kx]
_radius = np.hypot(_fx, _fy)
KS = np.rint(_f * TILE).astype(int)  # signed integer frequency of each FFT index
_ky, _kx = np.nonzero((_radius >= BAND[0]) & (_radius <= BAND[1]))
_kxs, _kys = KS[_kx], KS[_ky]
_half = (_kxs > 0) | ((_kxs == 0) & (_kys > 0))
_ky, _kx = _ky[_half], _kx[_half]

# --- the sync template: fixed, public, not symmetric under quarter turns -----------------------
N_SYNC = 16
SYNC_AMPLITUDE_V1 = 4.0  # relative to a data bin; ~20% of a v1 mark's energy
# v2: ~25%. The mark is fainter overall (43 dB), and finding the geometry of a crop of a densely
# textured photo is what fails first; a copy read in place has margin to spare.
SYNC_AMPLITUDE = 5.5
_trng = np.random.default_rng(20240601)
_angle = (np.arange(N_SYNC) + _trng.uniform(0.2, 0.8, N_SYNC)) * np.pi / N_SYNC - np.pi / 2
_rad = _trng.uniform(17.0, 24.0, N_SYNC)
SYNC_K = np.stack([np.rint(_rad * np.cos(_angle)), np.rint(_rad * np.sin(_angle))], 1).astype(int)
# Keep the peaks off the lines where JPEG's 8-px and WebP's 16-px block grids put their energy.
SYNC_K = np.where(SYNC_K % 8 == 0, SYNC_K + 1, SYNC_K)
SYNC_PHASE = _trng.uniform(0, 2 * np.pi, N_SYNC)
_sync = {(int(kx) % TILE, int(ky) % TILE) for kx, ky in SYNC_K}
_data = np.array([(int(x), int(y)) not in _sync for y, x in zip(_ky, _kx, strict=True)])

BIN_Y, BIN_X = _ky[_data], _kx[_data]  # FFT indices of the data bins
BIN_KY, BIN_KX = KS[BIN_Y], KS[BIN_X]  # their signed frequencies
N_BIN = len(BIN_Y)
_KX_SPAN = int(BIN_X.max()) + 1  # the bins lie in the half-plane kx >= 0, at small kx


def data_bins(tiles: np.ndarray) -> np.ndarray:
    """The data bins of real tiles ([..., TILE, TILE]) as a complex fft2 would give them: a real
    FFT along x, kept only for the columns the bins use, then an FFT along y (a quarter of the
    work; equal to fft2 to rounding)."""
    half = np.fft.rfft(tiles, axis=-1)[..., :_KX_SPAN]
    return np.fft.fft(half, axis=-2)[..., BIN_Y, BIN_X]


N_CHIP = 2 * N_BIN  # real and imaginary part of each bin
BIN_RING = _ring = np.rint(_radius[BIN_Y, BIN_X] * TILE).astype(int)
# Bins on the block-grid lines (a frequency multiple of 16 = period 8 px at 512²) pick up JPEG's
# blocking when the image was never rescaled; they get their own noise and SNR estimates.
ON_GRID = (BIN_KX % 16 == 0) | (BIN_KY % 16 == 0)
BIN_CLASS = _ring + (int(_ring.max()) + 1) * ON_GRID  # (ring, on-grid) noise class of each bin
CHIP_RING = np.concatenate([_ring] * 2)
CHIP_CLASS = np.concatenate([BIN_CLASS] * 2)


@functools.lru_cache(maxsize=8)
def keyed(key: bytes, n_payload: int, version: int = 2) -> KeyedLayout:
    return KeyedLayout(key, n_payload, version)


class KeyedLayout:
    """The key's choice of pilot and payload chips and of every chip's sign.

    v1 and v2 marks draw their layouts from the same key under different labels, so a v2 pilot
    is noise to the v1 detector and the other way round.
    """

    def __init__(self, key: bytes, n_payload: int, version: int = 2) -> None:
        self.key, self.version = key, version
        label = f"guard.watermark.v{version} layout".encode()
        seed = hmac.new(key, label, hashlib.sha256).digest()
        rng = np.random.default_rng(int.from_bytes(seed[:16], "big"))
        self.n_pilot = N_CHIP - n_payload
        if version == 1:
            order = rng.permutation(N_CHIP)
        else:
            # v2 pilots take whole bins (both chips), so their energy stays on the tile's
            # lattice while the scrambled payload spreads off it: sync refinement reads them.
            bins = rng.permutation(N_BIN)
            pilot, rest = bins[: self.n_pilot // 2], bins[self.n_pilot // 2 :]
            payload = rng.permutation(np.concatenate([rest, rest + N_BIN]))
            order = np.concatenate([pilot, pilot + N_BIN, payload])
        self.lattice_bins = np.unique(order[: self.n_pilot] % N_BIN)  # bins carrying a pilot
        self.pilot_idx = order[: self.n_pilot]
        self.payload_idx = order[self.n_pilot :]
        self.pilot_sign = rng.choice([-1.0, 1.0], self.n_pilot)
        self.payload_sign = rng.choice([-1.0, 1.0], n_payload)
        pilot_chips = np.zeros(N_CHIP)
        pilot_chips[self.pilot_idx] = self.pilot_sign
        self.pilot_bins = pilot_chips[:N_BIN] + 1j * pilot_chips[N_BIN:]  # as complex data bins

    def chips(self, payload_chips: np.ndarray) -> np.ndarray:
        chips = np.zeros(N_CHIP)
        chips[self.pilot_idx] = self.pilot_sign
        chips[self.payload_idx] = payload_chips * self.payload_sign
        return chips

    def payload_soft(self, soft: np.ndarray) -> np.ndarray:
        """Soft chip values in payload order, whitening removed."""
        return soft[self.payload_idx] * self.payload_sign

    def tile(self, payload_chips: np.ndarray) -> np.ndarray:
        """The tile in working pixels, unit RMS, sync template included."""
        chips = self.chips(payload_chips)
        spec = np.zeros((TILE, TILE), complex)
        spec[BIN_Y, BIN_X] = chips[:N_BIN] + 1j * chips[N_BIN:]
        amplitude = SYNC_AMPLITUDE if self.version == 2 else SYNC_AMPLITUDE_V1
        sync = amplitude * np.sqrt(2) * np.exp(1j * SYNC_PHASE)
        sy, sx = SYNC_K[:, 1] % TILE, SYNC_K[:, 0] % TILE
        spec[sy, sx] = sync
        # Hermitian completion makes the tile real.
        spec[(-BIN_Y) % TILE, (-BIN_X) % TILE] = np.conj(spec[BIN_Y, BIN_X])
        spec[(-sy) % TILE, (-sx) % TILE] = np.conj(sync)
        tile = np.fft.ifft2(spec).real
        return (tile / tile.std()).astype(np.float32)
