"""guard's invisible watermark: a keyed 64-bit ID that survives re-encoding, resizing and cropping.

    from guard import watermark
    marked = watermark.embed(image, watermark.new_payload())
    hit = watermark.detect(marked)          # hit.found, hit.payload, hit.p_value
    watermark.detect_third_party(image)     # SDXL / Stable Diffusion invisible-watermark marks

Importing this package is cheap (numpy, OpenCV, reedsolo); nothing here loads torch.
See docs/watermark.md for the design, its limits and what a match proves.
"""

from __future__ import annotations

from guard.errors import TooSmallError
from guard.watermark.engine import (
    ALGORITHM,
    ALGORITHM_V1,
    DEFAULT_KEY,
    SCHEMES,
    THRESHOLD,
    Alignment,
    Detection,
    detect,
    embed,
    new_payload,
)
from guard.watermark.pixels import MIN_SIDE
from guard.watermark.thirdparty import ThirdPartyMark, detect_third_party

__all__ = [
    "ALGORITHM",
    "ALGORITHM_V1",
    "DEFAULT_KEY",
    "MIN_SIDE",
    "SCHEMES",
    "THRESHOLD",
    "Alignment",
    "Detection",
    "ThirdPartyMark",
    "TooSmallError",
    "detect",
    "detect_third_party",
    "embed",
    "new_payload",
]
