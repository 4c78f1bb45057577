"""Detect Watermark (guard): guard.watermark.detect on every image of an IMAGE batch.

Each image gives the 64-bit ID as hex (empty when no mark is found) and the p-value: the chance
that an unmarked image would match this well (found only at p <= 1e-6, guard.watermark.THRESHOLD).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guard.integrations.comfyui.images import to_pil

if TYPE_CHECKING:
    import torch

    from guard.watermark import Detection


def detect_images(images: torch.Tensor) -> list[Detection]:
    from guard.watermark import detect

    return [detect(to_pil(image)) for image in images]
