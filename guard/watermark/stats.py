"""Exact binomial tails in log space, for p-values far below what a float can hold."""

from __future__ import annotations

import math

import numpy as np


def log10_binomial_tail(n: int, k: int) -> float:
    """log10 P(X >= k) for X ~ Binomial(n, 1/2)."""
    if k <= 0:
        return 0.0
    if k > n:
        return -math.inf
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k, n + 1)
    ]
    top = max(log_terms)
    total = top + math.log(sum(math.exp(t - top) for t in log_terms))
    return (total - n * math.log(2)) / math.log(10)


def log10_signed_sum_tail(values: np.ndarray, signs: np.ndarray) -> float:
    """log10 of Hoeffding's bound on P(sum(signs * values) >= observed) under random signs.

    Given the magnitudes |values|, if every sign is an independent fair coin (what an unmarked
    image gives the detector), the weighted sum of ±1 is sub-Gaussian:
    P(T >= t) <= exp(-t² / (2 Σ values²)). Unlike counting agreeing signs, the weights keep
    the soft information, worth about 2 dB of mark strength at the same false-positive bound.
    """
    t = float(np.dot(signs, values))
    if t <= 0:
        return 0.0
    return -(t * t) / (2 * float(np.dot(values, values))) / math.log(10)


def signed_sum_needed(values: np.ndarray, log10_tail: float) -> float:
    """The smallest sum whose bound (above) is at most 10**log10_tail: the inverse, so a decoder
    can stop early when no codeword can reach it."""
    return math.sqrt(max(0.0, -log10_tail) * math.log(10) * 2 * float(np.dot(values, values)))


def p_value(log10_p: float) -> float:
    """A float p-value, clamped to [1e-300, 1] so JSON and formatting never see 0 or inf."""
    return 10 ** min(0.0, max(log10_p, -300.0))
