"""Reed-Solomon RS(52, 11) over GF(64) under many erasure patterns of one received word at once.

Generalised minimum distance decoding tries up to 21 erasure patterns per candidate, and on an
unmarked picture every one of them fails, so the decoder's cost is what an unmarked picture
costs. reedsolo (pure Python, one pattern at a time, a function call per field product) took
about 1.4 ms a pattern, 40 % of a 1024² detect. Here reedsolo's own steps run for every pattern
together as numpy operations over [pattern, coefficient] arrays: the syndromes, its Forney
syndromes, its Berlekamp-Massey (the same update rule, list lengths and final check) and its
Chien search. Only the patterns that survive those reach reedsolo itself, for the error
magnitudes (`rs_correct_errata`), and every result is checked to be a codeword. No library
decodes a batch of patterns; tests compare every pattern with reedsolo's `RSCodec.decode`.
"""

from __future__ import annotations

import threading

import numpy as np
import reedsolo

K_SYMBOLS = 11
N_SYMBOLS = 52
NSYM = N_SYMBOLS - K_SYMBOLS  # 41 parity symbols

RS = reedsolo.RSCodec(nsym=NSYM, nsize=63, c_exp=6)
RS_LOCK = threading.Lock()  # reedsolo swaps module-level field tables on every call
_EXP = np.array(RS.gf_exp, dtype=np.int64)
_LOG = np.array(RS.gf_log, dtype=np.int64)
_NZ = np.arange(1, 64)
_MUL = np.zeros((64, 64), np.int64)  # the field's multiplication table
_MUL[1:, 1:] = _EXP[(_LOG[_NZ][:, None] + _LOG[_NZ][None, :]) % 63]
_INV = np.zeros(64, np.int64)
_INV[1:] = _EXP[(63 - _LOG[_NZ]) % 63]
# syndrome j is r(α^j) = Σ_i r_i α^(j·(n-1-i)) (fcr 0, generator α = 2): each term's exponent
_SYNDROME_POWERS = (np.arange(NSYM)[:, None] * (N_SYMBOLS - 1 - np.arange(N_SYMBOLS))) % 63
# Chien search: the locator Λ at α^-i for i = 0..51 is zero where position 51 - i is wrong
_CHIEN = _EXP[(-np.arange(N_SYMBOLS)[:, None] * np.arange(NSYM + 2)[None, :]) % 63]


def syndrome_terms(symbols: np.ndarray) -> np.ndarray:
    """[syndrome, symbol]: each received symbol's share of each syndrome (XOR sums them)."""
    terms = _EXP[(_LOG[symbols] + _SYNDROME_POWERS) % 63]
    terms[:, symbols == 0] = 0
    return terms


def is_codeword(symbols: np.ndarray) -> bool:
    return not np.bitwise_xor.reduce(syndrome_terms(symbols), axis=1).any()


def _xor_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ_k a[p, k]·b[p, k] in the field, per row p."""
    return np.bitwise_xor.reduce(_MUL[a, b], axis=-1)


def decode_patterns(symbols: np.ndarray, order: np.ndarray, counts: tuple[int, ...]) -> list:
    """For each n in `counts`: the codeword reedsolo's `RSCodec.decode` returns with the n first
    symbols of `order` erased (as a list of 52 ints), or None where it fails."""
    counts_a = np.array(counts)
    p = len(counts)
    terms = syndrome_terms(symbols)
    full = np.bitwise_xor.reduce(terms, axis=1)
    erased = np.bitwise_xor.accumulate(terms[:, order], axis=1)
    synd = np.stack([full ^ erased[:, n - 1] if n else full for n in counts])  # [pattern, 41]

    # reedsolo's Forney syndromes: for each erased position, s_j ← s_j·x ⊕ s_(j+1) (j < 40).
    # The values Berlekamp-Massey reads (j ≤ 40 - n) do not depend on the erasures' order.
    fsynd = synd.copy()
    for t in range(int(counts_a.max(initial=0))):
        x = int(_EXP[N_SYMBOLS - 1 - order[t]])
        rows = counts_a > t
        f = fsynd[rows]
        f[:, :-1] = _MUL[f[:, :-1], x] ^ f[:, 1:]
        fsynd[rows] = f

    # reedsolo's Berlekamp-Massey, coefficients lowest degree first; list lengths kept as
    # reedsolo keeps them (leading zeros included), since its update rule compares them.
    loc = np.zeros((p, NSYM + 2), np.int64)
    old = np.zeros_like(loc)
    loc[:, 0] = old[:, 0] = 1
    len_loc = np.ones(p, np.int64)
    len_old = np.ones(p, np.int64)
    for k in range(NSYM):
        active = k < NSYM - counts_a
        if not active.any():
            break
        window = fsynd[:, k - np.arange(k + 1)]  # s_(k-j) for j = 0..k (a locator has ≤ k+1)
        delta = np.where(active, _xor_dot(loc[:, : k + 1], window), 0)
        old = np.where(active[:, None], np.roll(old, 1, axis=1), old)  # old · x
        len_old = len_old + active
        swap = (delta != 0) & (len_old > len_loc)
        inv = _INV[delta]
        new_loc = np.where(swap[:, None], _MUL[old, delta[:, None]], loc)
        new_old = np.where(swap[:, None], _MUL[loc, inv[:, None]], old)
        new_len_loc = np.where(swap, len_old, len_loc)
        new_len_old = np.where(swap, len_loc, len_old)
        upd = delta != 0
        loc = np.where(upd[:, None], new_loc ^ _MUL[new_old, delta[:, None]], loc)
        len_loc = np.where(upd, np.maximum(new_len_loc, new_len_old), len_loc)
        old, len_old = new_old, new_len_old
    nonzero = loc != 0
    degree = np.where(nonzero.any(1), NSYM + 1 - np.argmax(nonzero[:, ::-1], axis=1), 0)
    degree = np.minimum(degree, len_loc - 1)
    ok = (degree - counts_a) * 2 + counts_a <= NSYM  # reedsolo's "too many errors" check

    # reedsolo's Chien search over the 52 positions: exactly `degree` roots, or failure
    roots = np.bitwise_xor.reduce(_MUL[loc[:, None, :], _CHIEN[None, :, :]], axis=-1) == 0
    ok &= roots.sum(1) == degree

    results: list = []
    for i, n in enumerate(counts):
        erase = sorted(order[:n].tolist())
        msg = symbols.copy()
        msg[erase] = 0
        if not synd[i].any():
            results.append(msg.tolist())
            continue
        if not ok[i]:
            results.append(None)
            continue
        err_pos = [N_SYMBOLS - 1 - int(j) for j in np.flatnonzero(roots[i])]
        with RS_LOCK:
            reedsolo.gf_log, reedsolo.gf_exp, reedsolo.field_charac = (
                RS.gf_log,
                RS.gf_exp,
                RS.field_charac,
            )
            try:
                fixed = reedsolo.rs_correct_errata(
                    bytearray(int(v) for v in msg),
                    [0, *(int(v) for v in synd[i])],
                    erase + err_pos,
                    RS.fcr,
                    RS.generator,
                )
            except reedsolo.ReedSolomonError:
                results.append(None)
                continue
        codeword = np.frombuffer(bytes(fixed), np.uint8).astype(np.int64)
        results.append(codeword.tolist() if is_codeword(codeword) else None)
    return results
