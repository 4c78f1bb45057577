"""Error correction: 64 payload bits ⇄ 1,664 ±1 chips.

A concatenated code, chosen because the chips arrive as *soft* values (a correlation, not a bit):

* outer: Reed-Solomon RS(52, 11) over GF(64), from `reedsolo`. 11 six-bit symbols hold the 64
  payload bits plus two zero bits; 41 parity symbols correct up to 20 wrong symbols, or up to 41
  symbols the inner decoder marks as unreliable (erasures), or any mix with 2·errors + erasures ≤ 41.
* inner: each six-bit symbol becomes one of the 64 words of the bi-orthogonal code of length 32
  (the rows of a 32×32 Hadamard matrix and their negatives, i.e. first-order Reed-Muller RM(1,5),
  minimum distance 16). It is decoded by maximum likelihood on the soft chips — 64 correlations —
  which is worth about 3–4 dB over repeating each bit, and its margin tells RS which symbols to
  erase.

reedsolo is pure Python, maintained, already a guard dependency, supports fields other than GF(256)
and erasure decoding; bchlib would need a compiled extension and cannot use soft information.
Decoding tries up to 21 erasure patterns per candidate (all of them fail on an unmarked picture):
`gmd` runs reedsolo's steps for all of them at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guard.watermark import gmd

PAYLOAD_BYTES = 8
SYMBOL_BITS = 6
K_SYMBOLS = 11  # 66 bits: the 64 payload bits and two zero bits
N_SYMBOLS = 52
INNER = 32
N_PAYLOAD_CHIPS = N_SYMBOLS * INNER  # 1,664
VALID_CODEWORDS_LOG2 = 8 * PAYLOAD_BYTES  # the two padding bits must be zero

# Generalised minimum distance decoding: erase the least sure symbols first, 0, 2, ..., 40 of them.
_ERASURES = tuple(range(0, 41, 2))


def _hadamard(n: int) -> np.ndarray:
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


_H = _hadamard(INNER)


@dataclass(frozen=True)
class Decoded:
    payload: bytes
    chips: np.ndarray  # the codeword as ±1 chips, to measure agreement
    symbol_errors: int


def _symbols(payload: bytes) -> list[int]:
    bits = np.concatenate([np.unpackbits(np.frombuffer(payload, np.uint8)), [0, 0]])
    weights = 1 << np.arange(SYMBOL_BITS - 1, -1, -1)
    return [int(v) for v in bits.reshape(K_SYMBOLS, SYMBOL_BITS) @ weights]


def _payload(symbols: list[int]) -> bytes | None:
    bits = np.array([(s >> (SYMBOL_BITS - 1 - j)) & 1 for s in symbols for j in range(6)])
    if bits[64:].any():
        return None  # padding bits must be zero: not a codeword guard could have written
    return np.packbits(bits[:64].astype(np.uint8)).tobytes()


def _inner(symbols: np.ndarray) -> np.ndarray:
    return _H[symbols & 31] * np.where(symbols >> 5, -1.0, 1.0)[:, None]


def encode(payload: bytes) -> np.ndarray:
    """The payload's 1,664 chips (±1), symbol by symbol."""
    if len(payload) != PAYLOAD_BYTES:
        raise ValueError(f"the payload is {PAYLOAD_BYTES} bytes, got {len(payload)}")
    with gmd.RS_LOCK:
        codeword = list(gmd.RS.encode(_symbols(payload)))
    return _inner(np.array(codeword)).ravel()


def decode(soft: np.ndarray, min_correlation: float = -np.inf) -> Decoded | None:
    """Best codeword for the soft chips, or None when Reed-Solomon cannot decode them, or when
    no codeword can correlate `min_correlation` with them (each symbol's best inner word bounds
    it; Reed-Solomon in pure Python is then skipped: the common case, an unmarked image)."""
    soft = soft.reshape(N_SYMBOLS, INNER)
    corr = soft @ _H.T
    mag = np.abs(corr)
    rows = np.arange(N_SYMBOLS)
    best = np.argmax(mag, axis=1)
    top = mag[rows, best]
    if top.sum() < min_correlation:
        return None
    mag[rows, best] = -1
    margin = top - mag.max(axis=1)  # small margin: the inner decoder was unsure
    symbols = best + 32 * (corr[rows, best] < 0)
    order = np.argsort(margin)
    found: Decoded | None = None
    for n_erase, codeword in zip(_ERASURES, gmd.decode_patterns(symbols, order, _ERASURES)):
        if codeword is None:
            continue
        payload = _payload(codeword[:K_SYMBOLS])
        if payload is None:
            continue
        cw = np.array(codeword)
        chips = _inner(cw).ravel()
        candidate = Decoded(payload, chips, int((cw != symbols).sum()))
        if found is None or chips @ soft.ravel() > found.chips @ soft.ravel():
            found = candidate
        if n_erase == 0 or candidate.symbol_errors <= 8:
            break  # a clean decode: more erasures would return the same codeword
    return found
