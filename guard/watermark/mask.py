"""Perceptual strength mask: more mark where texture hides it, little on flat, dark or clipped areas.

Contrast masking is measured by the local energy of the same mid-frequency band the mark uses, so
the mark scales with the texture that conceals it. Flat regions keep a floor of 30% (enough for the
detector, below a grey level); dark shadows and near-white highlights are turned down further,
because banding-free shadows and clipped whites show any pattern first.
"""

from __future__ import annotations

import cv2
import numpy as np

FLOOR, CEILING, REFERENCE = 0.3, 2.5, 4.0


def strength_mask(luma: np.ndarray) -> np.ndarray:
    """Per-pixel gain (mean about 1 on natural photos) at the resolution of `luma`."""
    band = cv2.GaussianBlur(luma, (0, 0), 0.5) - cv2.GaussianBlur(luma, (0, 0), 2)
    energy = np.sqrt(cv2.GaussianBlur(band * band, (0, 0), 6))
    gain = np.clip(energy / REFERENCE, FLOOR, CEILING)
    mean = cv2.GaussianBlur(luma, (0, 0), 3)
    gain *= np.clip(mean / 40.0, 0.3, 1.0)  # shadows
    gain *= np.clip((255.0 - mean) / 20.0, 0.2, 1.0)  # highlights about to clip
    return cv2.GaussianBlur(gain, (0, 0), 2)
