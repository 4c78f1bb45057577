"""The invisible-watermark marks that Stable Diffusion tools embed, named when they are present.

All three use invisible-watermark's `dwtDct` method on BGR pixels:

* SDXL (diffusers `StableDiffusionXLWatermarker`, Stability's generative-models): the 48 bits
  0xb3ec907bb19e, `set_watermark("bits", ...)`;
* Stable Diffusion v1 reference scripts (CompVis txt2img.py): the bytes "StableDiffusionV1";
* Stable Diffusion v2 reference scripts (Stability-AI/stablediffusion): the bytes "SDV2".

dwtDct writes each message bit into the quantisation parity of the strongest Haar-DCT coefficient of
many 4×4 blocks of the U channel, cycling through the message. Decoding it is one vectorised pass
here (the per-block bits do not depend on the message length, so the three marks share it); it
reads exactly what `imwatermark.WatermarkDecoder(...).decode(bgr, "dwtDct")` reads, without
importing imwatermark, whose package import pulls in torch. The mark is fragile: a JPEG re-encode
or a resize usually erases it, so its absence proves nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from guard.watermark import stats

REPORT_BELOW = 1e-6
_SCALE = 36  # imwatermark's default dwtDct quantisation step for the U channel
_BLOCK = 4


@dataclass(frozen=True)
class KnownMark:
    name: str
    message: str  # how it is usually written
    bits: tuple[int, ...]


def _bits_of_bytes(data: bytes) -> tuple[int, ...]:
    return tuple(int(b) for b in np.unpackbits(np.frombuffer(data, np.uint8)))


KNOWN: tuple[KnownMark, ...] = (
    KnownMark(
        "Stable Diffusion XL (diffusers / Stability AI)",
        "0xb3ec907bb19e",
        tuple(int(b) for b in bin(0xB3EC907BB19E)[2:]),
    ),
    KnownMark(
        "Stable Diffusion v1 reference scripts",
        "StableDiffusionV1",
        _bits_of_bytes(b"StableDiffusionV1"),
    ),
    KnownMark("Stable Diffusion v2 reference scripts", "SDV2", _bits_of_bytes(b"SDV2")),
)


@dataclass(frozen=True)
class ThirdPartyMark:
    """A known third-party mark found in the pixels (only reported below p = 1e-6)."""

    name: str
    message: str
    bits: int
    bit_agreement: float
    p_value: float
    method: str = "invisible-watermark dwtDct"
    fragile: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "message": self.message,
            "bits": self.bits,
            "bit_agreement": self.bit_agreement,
            "p_value": self.p_value,
            "method": self.method,
            "fragile": self.fragile,
        }


def block_bits(bgr: np.ndarray) -> np.ndarray:
    """dwtDct's per-block bit decisions, in the order its decoder visits the blocks."""
    import pywt  # invisible-watermark's own dependency

    rows, cols = bgr.shape[:2]
    u = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)[: rows // 4 * 4, : cols // 4 * 4, 1]
    ca, _ = pywt.dwt2(u, "haar")
    br, bc = ca.shape[0] // _BLOCK, ca.shape[1] // _BLOCK
    blocks = ca[: br * _BLOCK, : bc * _BLOCK].reshape(br, _BLOCK, bc, _BLOCK)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(br * bc, _BLOCK * _BLOCK)
    strongest = np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1  # the DC term is skipped
    value = np.abs(blocks[np.arange(len(blocks)), strongest])
    return (value % _SCALE) > 0.5 * _SCALE


def message_bits(blocks: np.ndarray, length: int) -> np.ndarray:
    """Majority vote per message bit, exactly as imwatermark averages its block scores."""
    slot = np.arange(len(blocks)) % length
    votes = np.bincount(slot, weights=blocks, minlength=length)
    return votes / np.bincount(slot, minlength=length) * 255 > 127


def detect_third_party(image: Image.Image) -> list[ThirdPartyMark]:
    """Known invisible-watermark marks present in `image`, strongest evidence first."""
    w, h = image.size
    if w * h < 256 * 256 or min(w, h) < 2 * _BLOCK * 2:
        return []  # invisible-watermark itself refuses images this small
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    blocks = block_bits(np.ascontiguousarray(rgb[:, :, ::-1]))
    if len(blocks) == 0:
        return []
    found = []
    for mark in KNOWN:
        n = len(mark.bits)
        agree = int(np.count_nonzero(message_bits(blocks, n) == np.array(mark.bits, bool)))
        log10_p = math.log10(len(KNOWN)) + stats.log10_binomial_tail(n, agree)
        if log10_p < math.log10(REPORT_BELOW):
            found.append(
                ThirdPartyMark(
                    mark.name, mark.message, n, round(agree / n, 4), stats.p_value(log10_p)
                )
            )
    return sorted(found, key=lambda m: m.p_value)
