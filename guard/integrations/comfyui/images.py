"""ComfyUI's IMAGE type and the PNG text it writes, converted exactly as its own nodes do.

An IMAGE is a torch tensor of shape B x H x W x C (C = 3), float32 in 0..1, on the CPU between
nodes. SaveImage (ComfyUI's nodes.py) turns each image of the batch into 8-bit pixels with
`np.clip(255. * image.cpu().numpy(), 0, 255).astype(np.uint8)` (truncating, not rounding), and
LoadImage turns pixels back with `np.array(image).astype(np.float32) / 255.0`, batched as
[1, H, W, C]; `to_pil` and `to_tensor` are those two, so 8-bit pixels survive the round trip
exactly.

SaveImage's text: a `prompt` chunk with `json.dumps(prompt)` (the API graph), then one chunk per
key of `extra_pnginfo` (the browser sends `workflow`, the UI graph) with `json.dumps` of its
value, each through Pillow's `PngInfo.add_text`; nothing at all when ComfyUI runs with
--disable-metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, PngImagePlugin

if TYPE_CHECKING:
    import torch


def to_pil(image: torch.Tensor) -> Image.Image:
    """One image of an IMAGE batch (H x W x C), as SaveImage converts it."""
    pixels = 255.0 * image.cpu().numpy()
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL images of one size -> an IMAGE batch (B x H x W x 3), as LoadImage converts them."""
    import torch

    arrays = [np.array(im.convert("RGB")).astype(np.float32) / 255.0 for im in images]
    return torch.from_numpy(np.stack(arrays))


def batch(images: torch.Tensor) -> list[Image.Image]:
    return [to_pil(image) for image in images]


def png_entries(
    prompt: Mapping[str, Any] | None, extra_pnginfo: Mapping[str, Any] | None
) -> list[tuple[str, str]]:
    """SaveImage's text chunks, in its order: (keyword, text)."""
    entries = []
    if prompt is not None:
        entries.append(("prompt", json.dumps(prompt)))
    if extra_pnginfo is not None:
        for key in extra_pnginfo:
            entries.append((key, json.dumps(extra_pnginfo[key])))
    return entries


def png_info(entries: Sequence[tuple[str, str]]) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in entries:
        info.add_text(key, value)
    return info
