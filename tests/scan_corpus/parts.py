"""How the corpus files are made: pictures, encoders and the marks and metadata other tools
write (SDXL's invisible watermark, a legacy C2PA manifest, XMP alone, a damaged file).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, PngImagePlugin

W, H = 320, 256
WEBUI_PARAMETERS = (
    "a lighthouse at dusk, oil painting\n"
    "Negative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, "
    "Size: 512x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"
)
# ComfyUI's SaveImage: the API graph as `prompt`, the editor graph as `workflow`
COMFY_PROMPT = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "cfg": 8.0}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI"}},
}
COMFY_WORKFLOW = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": []}
NOVELAI_COMMENT = {"prompt": "a cat", "steps": 28, "sampler": "k_euler", "scale": 5, "uc": "bad"}
SDXL_BITS = [int(b) for b in bin(0xB3EC907BB19E)[2:]]


def picture(seed: int, width: int = W, height: int = H) -> Image.Image:
    """A textured, photo-like test picture (gradients, edges and grain), deterministic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    fx, fy, phase = rng.uniform(8, 40), rng.uniform(8, 40), rng.uniform(0, 6.28)
    r = 120 + 90 * np.sin(x / fx + phase) * np.cos(y / fy)
    g = 128 + 80 * np.sin((x + y) / (fx + fy) * 2 + phase)
    b = 60 + 150 * (x / width) * (y / height)
    rgb = np.stack([r, g, b], -1) + rng.normal(0, 7, (height, width, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def jpeg(im: Image.Image, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, **params)
    return buf.getvalue()


def png(im: Image.Image, text: dict[str, str] | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buf = io.BytesIO()
    im.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def sdxl_marked(im: Image.Image) -> Image.Image:
    from imwatermark import WatermarkEncoder  # the encoder diffusers' SDXL watermarker uses

    enc = WatermarkEncoder()
    enc.set_watermark("bits", SDXL_BITS)
    bgr = np.ascontiguousarray(np.asarray(im)[:, :, ::-1])
    return Image.fromarray(np.ascontiguousarray(enc.encode(bgr, "dwtDct")[:, :, ::-1]))


def legacy_c2pa(data: bytes) -> bytes:
    """A manifest with only the deprecated c2pa.training-mining assertion (C2PA 1.x tools)."""
    from guard.identity import Identity
    from guard.provenance import c2pa_io, vocab

    definition = {
        "claim_generator_info": [{"name": "legacy-camera-app", "version": "1.0"}],
        "title": "legacy.jpg",
        "format": "image/jpeg",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {"action": "c2pa.created", "digitalSourceType": vocab.source_uri("photo")}
                    ]
                },
            },
            {
                "label": "c2pa.training-mining",
                "data": {
                    "entries": {
                        f"c2pa.{use}": {"use": "notAllowed"}
                        for use in ("ai_generative_training", "ai_inference", "ai_training")
                    }
                    | {"c2pa.data_mining": {"use": "notAllowed"}}
                },
            },
        ],
    }
    signed, _ = c2pa_io.sign(definition, data, "image/jpeg", Identity.default())
    return signed


def flip_scan_byte(jpeg: bytes) -> bytes:
    """Change one byte of entropy-coded data just before EOI: still decodes, hash no longer."""
    data = bytearray(jpeg)
    i = data.rindex(b"\xff\xd9") - 64
    while data[i] == 0xFF or data[i - 1] == 0xFF:
        i -= 1
    data[i] ^= 0x10
    return bytes(data)


def declared_size(png: bytes, width: int, height: int) -> bytes:
    """The same PNG with IHDR claiming another size (CRC fixed, so only the size lies)."""
    import struct
    import zlib

    body = struct.pack(">II", width, height) + png[24:29]
    return png[:16] + body + struct.pack(">I", zlib.crc32(b"IHDR" + body)) + png[33:]


def xmp_only(data: bytes, fields: dict[str, object]) -> bytes:
    from guard.provenance import xmp

    return xmp.embed(data, xmp.merged_packet(None, fields))
