"""guard's mark inside a diffusers pipeline's own post-process step.

SDXL pipelines watermark inside their post-process step (`pipe.watermark.apply_watermark`);
guard.pipeline.hooks.attach installs `GuardWatermarker` there, so guard's mark goes in at the same point
(after Stability's own mark, which is kept). Pipelines without that step get the same mark from
guard.pipeline.hooks after the call: on PIL images, or on np/pt arrays through `mark_arrays`.

Nothing here imports torch or diffusers at module level.
"""

from __future__ import annotations

from typing import Any

from guard.errors import TooSmallError


class GuardWatermarker:
    """Drop-in for diffusers' `StableDiffusionXLWatermarker`: `apply_watermark(images)` takes and
    returns a torch tensor in [-1, 1], NCHW. It embeds a fresh guard payload per image and keeps
    the payloads for the attach wrapper to pair with the returned images."""

    def __init__(self, key: bytes | None = None, inner: Any = None) -> None:
        self.key = key
        self.inner = inner  # the pipeline's previous watermarker, applied first
        self._payloads: list[str | None] = []
        self.notes: list[str] = []

    def apply_watermark(self, images: Any) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        if self.inner is not None:
            images = self.inner.apply_watermark(images)
        device, dtype = images.device, images.dtype
        array = ((images.detach().float().cpu() / 2 + 0.5).clamp(0, 1) * 255).round()
        array = array.permute(0, 2, 3, 1).numpy().astype(np.uint8)
        out = []
        for pixels in array:
            marked, payload = self.mark(Image.fromarray(pixels))
            self._payloads.append(payload)
            out.append(np.asarray(marked.convert("RGB")))
        result = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255 * 2 - 1
        return result.to(device=device, dtype=dtype)

    def mark(self, image: Any) -> tuple[Any, str | None]:
        """Embed a new payload; images too small to carry it are returned unmarked."""
        from guard import watermark as wm

        payload = wm.new_payload()
        try:
            return wm.embed(image, payload, key=self.key), payload.hex()
        except TooSmallError as exc:
            self.notes.append(f"not watermarked: {exc}")
            return image, None

    def take(self) -> list[str | None]:
        """The payloads embedded since the last call, oldest first."""
        payloads, self._payloads = self._payloads, []
        return payloads


def mark_arrays(images: Any, key: bytes | None) -> Any:
    """np/pt outputs: watermark the pixels (they cannot carry pending provenance for `save`)."""
    import numpy as np
    from PIL import Image

    helper = GuardWatermarker(key)
    if hasattr(images, "detach"):  # torch tensor, NCHW in [0, 1]
        import torch

        array = (images.detach().float().cpu().clamp(0, 1) * 255).round()
        array = array.permute(0, 2, 3, 1).numpy().astype(np.uint8)
        out = [np.asarray(helper.mark(Image.fromarray(a))[0].convert("RGB")) for a in array]
        result = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255
        return result.to(device=images.device, dtype=images.dtype)
    array = (np.clip(np.asarray(images, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8)
    out = [np.asarray(helper.mark(Image.fromarray(a))[0].convert("RGB")) for a in array]
    return (np.stack(out).astype(np.float32) / 255).astype(np.asarray(images).dtype)
