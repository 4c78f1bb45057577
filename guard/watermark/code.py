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
Decoding tries up to 21 erasure patterns per candidate (most of them on unmarked pictures, where
all fail), so the syndromes, which reedsolo evaluates symbol by symbol for every pattern, are
computed here once with numpy (they are linear in the received word: erasing a symbol removes its
column); reedsolo's own steps do the rest (Berlekamp-Massey, Chien search, Forney).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import reedsolo

PAYLOAD_BYTES = 8
SYMBOL_BITS = 6
K_SYMBOLS = 11  # 66 bits: the 64 payload bits and two zero bits
N_SYMBOLS = 52
INNER = 32
N_PAYLOAD_CHIPS = N_SYMBOLS * INNER  # 1,664
VALID_CODEWORDS_LOG2 = 8 * PAYLOAD_BYTES  # the two padding bits must be zero

_NSYM = N_SYMBOLS - K_SYMBOLS
_RS = reedsolo.RSCodec(nsym=_NSYM, nsize=63, c_exp=SYMBOL_BITS)
_RS_LOCK = threading.Lock()  # reedsolo swaps module-level field tables on every call
_EXP = np.array(_RS.gf_exp, dtype=np.int64)
_LOG = np.array(_RS.gf_log, dtype=np.int64)
# syndrome j is r(α^j) = Σ_i r_i α^(j·(n-1-i)) (fcr 0, generator α = 2): each term's exponent
_SYNDROME_POWERS = (np.arange(_NSYM)[:, None] * (N_SYMBOLS - 1 - np.arange(N_SYMBOLS))) % 63
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


def _syndrome_terms(symbols: np.ndarray) -> np.ndarray:
    """[syndrome, symbol]: each received symbol's share of each syndrome (XOR sums them)."""
    terms = _EXP[(_LOG[symbols] + _SYNDROME_POWERS) % 63]
    terms[:, symbols == 0] = 0
    return terms


def _install_field() -> None:
    """What RSCodec.decode does first: reedsolo's low-level steps read module-level tables."""
    reedsolo.gf_log, reedsolo.gf_exp, reedsolo.field_charac = (
        _RS.gf_log,
        _RS.gf_exp,
        _RS.field_charac,
    )


def _rs_decode(symbols: np.ndarray, erase: list[int], syndromes: np.ndarray) -> list[int] | None:
    """reedsolo's rs_correct_msg for one erasure pattern, given the syndromes of `symbols` with
    the erased ones zeroed: the corrected codeword, or None. Call under _RS_LOCK with the
    codec's field tables installed."""
    msg = bytearray(int(v) for v in symbols)
    for i in erase:
        msg[i] = 0
    if not syndromes.any():
        return list(msg)
    synd = [0, *(int(v) for v in syndromes)]
    try:
        fsynd = reedsolo.rs_forney_syndromes(synd, erase, N_SYMBOLS, _RS.generator)
        err_loc = reedsolo.rs_find_error_locator(fsynd, _NSYM, erase_count=len(erase))
        err_pos = reedsolo.rs_find_errors(err_loc[::-1], N_SYMBOLS, _RS.generator)
        fixed = reedsolo.rs_correct_errata(msg, synd, erase + err_pos, _RS.fcr, _RS.generator)
    except reedsolo.ReedSolomonError:
        return None
    codeword = np.frombuffer(bytes(fixed), np.uint8).astype(np.int64)
    if np.bitwise_xor.reduce(_syndrome_terms(codeword), axis=1).any():
        return None  # reedsolo's final check: not repaired
    return codeword.tolist()


def encode(payload: bytes) -> np.ndarray:
    """The payload's 1,664 chips (±1), symbol by symbol."""
    if len(payload) != PAYLOAD_BYTES:
        raise ValueError(f"the payload is {PAYLOAD_BYTES} bytes, got {len(payload)}")
    with _RS_LOCK:
        codeword = list(_RS.encode(_symbols(payload)))
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
    # the syndromes with the n least sure symbols erased, for every n: the full word's, less
    # the erased symbols' terms
    terms = _syndrome_terms(symbols)
    erased = np.bitwise_xor.accumulate(terms[:, order], axis=1)
    full = np.bitwise_xor.reduce(terms, axis=1)
    found: Decoded | None = None
    for n_erase in _ERASURES:
        erase = sorted(order[:n_erase].tolist())
        syndromes = full ^ erased[:, n_erase - 1] if n_erase else full
        with _RS_LOCK:
            _install_field()
            codeword = _rs_decode(symbols, erase, syndromes)
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
