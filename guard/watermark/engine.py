"""embed / detect: the orchestration of layout, code, mask and sync."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from guard.watermark import code, pixels, stats, sync
from guard.watermark.layout import TILE, keyed
from guard.watermark.mask import strength_mask

ALGORITHM = "org.guard.watermark.v1"
DEFAULT_KEY = b"guard public watermark key v1"
STRENGTH = 1.3  # luma offset scale at strength 1.0 (mean PSNR about 41 dB on photos)
MIN_GAIN_RMS, MAX_LIFT = 1.15, 2.0  # energy floor: ~44 dB PSNR at most, from flat images
THRESHOLD = 1e-6  # a detection is reported only below this false-positive probability
CANDIDATES = 3  # poses decoded at most; the p-value is multiplied by this


def new_payload() -> bytes:
    """A fresh random 64-bit watermark ID."""
    return secrets.token_bytes(code.PAYLOAD_BYTES)


def embed(
    image: Image.Image,
    payload: bytes,
    *,
    key: bytes | None = None,
    strength: float | None = None,
) -> Image.Image:
    """Return a copy of `image` carrying `payload` (8 bytes) under `key`.

    Same size and mode as the input (palette images come back as RGB/RGBA); alpha is untouched.
    Raises TooSmallError when the short side is under 256 px.
    """
    if len(payload) != code.PAYLOAD_BYTES:
        raise ValueError(f"the payload is {code.PAYLOAD_BYTES} bytes, got {len(payload)}")
    if strength is not None and not (0 < strength <= 4):
        raise ValueError(f"strength must be in (0, 4], got {strength}")
    pixels.check_size(image)
    planes = pixels.split(image)
    layout = keyed(key or DEFAULT_KEY, code.N_PAYLOAD_CHIPS)
    tile = layout.tile(code.encode(payload))
    luma = pixels.working_luma(image)
    wh, ww = luma.shape
    pattern = np.tile(tile, (math.ceil(wh / TILE), math.ceil(ww / TILE)))[:wh, :ww]
    gain = strength_mask(luma)
    # Flat or dark images would get almost no mark; lift them to a minimum energy (bounded).
    rms = float(np.sqrt(np.mean(gain * gain)))
    gain *= min(MAX_LIFT, max(1.0, MIN_GAIN_RMS / max(rms, 1e-6)))
    delta = (STRENGTH * (strength or 1.0)) * gain * pattern
    return pixels.add_luma_delta(planes, delta.astype(np.float32))


@dataclass(frozen=True)
class Detection:
    """What the detector found. `found` is True only when `p_value` <= 1e-6.

    `p_value` is the probability that an image *without* this mark would produce an ID match at
    least this good, accounting for every codeword and every pose tried.
    """

    found: bool
    payload: bytes | None
    p_value: float
    bit_accuracy: float | None  # share of the 1,664 code chips that agree with the decoded ID
    scheme: str = ALGORITHM
    status: str = "not_found"  # "found", "not_found" or "too_small"
    reason: str | None = None  # why nothing could be checked (too small), in words
    geometry: dict[str, float | bool] = field(default_factory=dict)  # scale, rotation, mirrored

    @property
    def id(self) -> str | None:
        return self.payload.hex() if self.payload else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "id": self.id,
            "p_value": self.p_value,
            "bit_accuracy": self.bit_accuracy,
            "scheme": self.scheme,
            "status": self.status,
            "reason": self.reason,
            "geometry": self.geometry or None,
        }


def detect(image: Image.Image, *, key: bytes | None = None) -> Detection:
    """Look for guard's mark under `key` (default: the public key). Never raises on small images."""
    problem = pixels.too_small(image.size)
    if problem:
        return Detection(False, None, 1.0, None, status="too_small", reason=problem)
    layout = keyed(key or DEFAULT_KEY, code.N_PAYLOAD_CHIPS)
    r = sync.residual(pixels.working_luma(image))
    # Every candidate pose is one more chance for a false match: pay for all of them up front.
    log10_trials = math.log10(CANDIDATES) + code.VALID_CODEWORDS_LOG2 * math.log10(2)
    best: tuple[float, code.Decoded, sync.Registration, int] | None = None
    for pose in sync.sync_candidates(r, CANDIDATES):
        reg = sync.register(r, pose, layout)
        soft = layout.payload_soft(sync.soft_chips(reg, layout))
        decoded = code.decode(soft)
        if decoded is None:
            continue
        agree = int(np.count_nonzero(np.sign(soft) == decoded.chips))
        log10_p = log10_trials + stats.log10_binomial_tail(code.N_PAYLOAD_CHIPS, agree)
        if best is None or log10_p < best[0]:
            best = (log10_p, decoded, reg, agree)
        if log10_p <= math.log10(THRESHOLD):
            break
    if best is None:
        return Detection(False, None, 1.0, None)
    log10_p, decoded, reg, agree = best
    found = log10_p <= math.log10(THRESHOLD)
    return Detection(
        found=found,
        payload=decoded.payload if found else None,
        p_value=stats.p_value(log10_p),
        bit_accuracy=round(agree / code.N_PAYLOAD_CHIPS, 4) if found else None,
        status="found" if found else "not_found",
        geometry={
            "scale": round(reg.scale, 4),
            "rotation_degrees": round(-reg.angle_degrees, 2) + 0.0,  # counter-clockwise positive
            "mirrored": reg.mirrored,
        }
        if found
        else {},
    )
