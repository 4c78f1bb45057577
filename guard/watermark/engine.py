"""embed / detect: the orchestration of layout, code, mask, scramble, sync and register."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from guard.watermark import code, convolutional, pixels, register, scramble, stats, sync
from guard.watermark.layout import TILE, KeyedLayout, keyed
from guard.watermark.mask import strength_mask

ALGORITHM = "org.guard.watermark.v2"
ALGORITHM_V1 = "org.guard.watermark.v1"
SCHEMES = {1: ALGORITHM_V1, 2: ALGORITHM}
DEFAULT_KEY = b"guard public watermark key v1"  # the public key's bytes never change
STRENGTH = 0.95  # luma offset scale at strength 1.0 (mean PSNR about 43 dB on photos)
STRENGTH_V1 = 1.3  # what guard 0.1 wrote v1 marks with (about 41 dB)
MIN_GAIN_RMS, MAX_LIFT = 1.15, 2.0  # energy floor: ~44 dB PSNR at most, from flat images
THRESHOLD = 1e-6  # a detection is reported only below this false-positive probability
CANDIDATES = 3  # poses decoded: the registered poses whose pilot peaks highest
GENERAL_CANDIDATES = 2  # general affine poses of each kind registered beside the similarity ones
DECODES_PER_POSE = 2  # v2 slot alignments decoded per pose (all 16 are paid for)
# Every decode the detector could attempt, v1 and v2: the union bound of the p-value.
TRIALS = 1 + CANDIDATES * (scramble.N_SLOT + 1)


def new_payload() -> bytes:
    """A fresh random 64-bit watermark ID."""
    return secrets.token_bytes(code.PAYLOAD_BYTES)


def embed(
    image: Image.Image,
    payload: bytes,
    *,
    key: bytes | None = None,
    strength: float | None = None,
    version: int = 2,
) -> Image.Image:
    """Return a copy of `image` carrying `payload` (8 bytes) under `key`.

    Same size and mode as the input (palette images come back as RGB/RGBA); alpha is untouched.
    Raises TooSmallError when the short side is under 256 px. `version=1` writes the old mark,
    for compatibility tests only.
    """
    if len(payload) != code.PAYLOAD_BYTES:
        raise ValueError(f"the payload is {code.PAYLOAD_BYTES} bytes, got {len(payload)}")
    if strength is not None and not (0 < strength <= 4):
        raise ValueError(f"strength must be in (0, 4], got {strength}")
    if version not in SCHEMES:
        raise ValueError(f"unknown watermark version {version}")
    pixels.check_size(image)
    planes = pixels.split(image)
    key = key or DEFAULT_KEY
    layout = keyed(key, code.N_PAYLOAD_CHIPS, version)
    chips = convolutional.encode(payload) if version == 2 else code.encode(payload)
    luma = pixels.working_luma(image)
    wh, ww = luma.shape
    if version == 1:
        tile = layout.tile(chips)
        pattern = np.tile(tile, (math.ceil(wh / TILE), math.ceil(ww / TILE)))[:wh, :ww]
    else:
        signs = scramble.signs(key, code.N_PAYLOAD_CHIPS)
        tiles = np.stack([layout.tile(chips * signs[s]) for s in range(scramble.N_SLOT)])
        pattern = scramble.pattern(tiles, (wh, ww))
    gain = strength_mask(luma)
    # Flat or dark images would get almost no mark; lift them to a minimum energy (bounded).
    rms = float(np.sqrt(np.mean(gain * gain)))
    gain *= min(MAX_LIFT, max(1.0, MIN_GAIN_RMS / max(rms, 1e-6)))
    base = STRENGTH if version == 2 else STRENGTH_V1
    delta = (base * (strength or 1.0)) * gain * pattern
    return pixels.add_luma_delta(planes, delta.astype(np.float32))


@dataclass(frozen=True)
class Alignment:
    """Where the received picture sits in the marked picture's working frame.

    A pixel at working coordinates x (short side scaled to 512) of the received image lies at
    `matrix @ x + shift` in the marked picture's working frame, give or take whole multiples of
    `period` in each direction: the mark repeats (v1 every tile, v2 every 4 tiles), so that is
    all it can tell. The content check (guard.ledger.fingerprint) uses it to compare like with like.
    """

    matrix: tuple[tuple[float, float], tuple[float, float]]
    shift: tuple[float, float]  # (x, y)
    period: int


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
    alignment: Alignment | None = field(default=None, repr=False, compare=False)

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
    """Look for guard's mark (v2, then v1) under `key` (default: the public key).

    Never raises on small images. The p-value pays for every decode the search could attempt
    (`TRIALS`), whichever one succeeds.
    """
    problem = pixels.too_small(image.size)
    if problem:
        return Detection(False, None, 1.0, None, status="too_small", reason=problem)
    key = key or DEFAULT_KEY
    layouts = {v: keyed(key, code.N_PAYLOAD_CHIPS, v) for v in SCHEMES}
    r = sync.residual(pixels.working_luma(image))
    folder = register.Folder(r)  # one fold cache for every registration of this picture
    search = _Search()
    # The identity pose first: a copy whose geometry was left alone (re-encoded, resized,
    # filtered, or stripped of its sync and pilots) is read on the working grid as it is.
    search.try_v2(r, register.identity(folder, layouts[2]), layouts[2], identity=True)
    if not search.found:
        poses = sync.sync_candidates(r, CANDIDATES, GENERAL_CANDIDATES, layouts[2].lattice_bins)
        # One fold per pose; the stronger pilot says which version to register and read.
        # Only the CANDIDATES poses whose pilot peaks highest are sharpened and decoded (the
        # pilot is no part of the ID).
        starts = [register.register(folder, pose, list(layouts.values())) for pose in poses]
        starts = sorted((g for g in starts if g.z >= register.POSE_Z), key=lambda g: -g.z)
        regs = sorted(
            (register.sharpen(folder, g) for g in starts[:CANDIDATES]), key=lambda g: -g.z
        )
        for reg in regs:
            if reg.layout.version == 2:
                search.try_v2(r, reg, reg.layout)
            else:
                search.try_v1(reg, reg.layout)
            if search.found:
                break
    return search.result()


class _Search:
    """The best decode so far, and its p-value under the union bound of all TRIALS."""

    log10_trials = math.log10(TRIALS) + code.VALID_CODEWORDS_LOG2 * math.log10(2)

    def __init__(self) -> None:
        self.best: tuple[float, Any, register.Registration, int, int, tuple[int, int]] | None = None

    @property
    def found(self) -> bool:
        return self.best is not None and self.best[0] <= math.log10(THRESHOLD)

    def _consider(
        self,
        soft: np.ndarray,
        reg: register.Registration,
        version: int,
        delta: tuple[int, int] = (0, 0),
    ) -> None:
        # no codeword correlating less than this can pass: the decoders may stop early
        needed = stats.signed_sum_needed(soft, math.log10(THRESHOLD) - self.log10_trials)
        decoder = convolutional if version == 2 else code
        decoded = decoder.decode(soft, needed)
        if decoded is None:
            return
        agree = int(np.count_nonzero(np.sign(soft) == decoded.chips))
        log10_p = self.log10_trials + stats.log10_signed_sum_tail(soft, decoded.chips)
        if self.best is None or log10_p < self.best[0]:
            self.best = (log10_p, decoded, reg, agree, version, delta)

    def try_v1(self, reg: register.Registration, layout: KeyedLayout) -> None:
        self._consider(layout.payload_soft(register.soft_chips(reg, layout)), reg, 1)

    def try_v2(
        self, r: np.ndarray, reg: register.Registration, layout: KeyedLayout, identity: bool = False
    ) -> None:
        fold = scramble.fold_slots(r, reg.inverse_map, reg.offset, reg.ring_power)
        ranked = scramble.payload_candidates(fold, layout)
        if identity:  # the grid origin is the image's: only the zero alignment is tried
            ranked = [c for c in ranked if c[1] == (0, 0)]
        for _, delta, soft in ranked[:DECODES_PER_POSE]:
            self._consider(soft, reg, 2, delta)
            if self.found:
                return

    def result(self) -> Detection:
        if self.best is None:
            return Detection(False, None, 1.0, None)
        log10_p, decoded, reg, agree, version, delta = self.best
        found = log10_p <= math.log10(THRESHOLD)
        return Detection(
            found=found,
            payload=decoded.payload if found else None,
            p_value=stats.p_value(log10_p),
            bit_accuracy=round(agree / code.N_PAYLOAD_CHIPS, 4) if found else None,
            scheme=SCHEMES[version],
            status="found" if found else "not_found",
            geometry={
                "scale": round(reg.scale, 4),
                "rotation_degrees": round(-reg.angle_degrees, 2) + 0.0,  # counter-clockwise
                "mirrored": reg.mirrored,
            }
            if found
            else {},
            alignment=_alignment(reg, version, delta) if found else None,
        )


def _alignment(reg: register.Registration, version: int, delta: tuple[int, int]) -> Alignment:
    """Tile coordinates are m·x − offset; v2's slot alignment adds whole tiles."""
    m = reg.inverse_map
    dy, dx = (delta[0] * TILE, delta[1] * TILE) if version == 2 else (0, 0)
    return Alignment(
        matrix=((float(m[0, 0]), float(m[0, 1])), (float(m[1, 0]), float(m[1, 1]))),
        shift=(float(dx - reg.offset[1]), float(dy - reg.offset[0])),
        period=TILE * (scramble.SUPER if version == 2 else 1),
    )
