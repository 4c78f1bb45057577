"""Protect Artwork (guard): guard.protection.protect on every image of an IMAGE batch.

IMAGE in, IMAGE out (same shape, float32 0..1 on the CPU, as ComfyUI passes images between
nodes). The model protected against (hub id, diffusers folder or single-file checkpoint; empty:
guard's default, the Stable Diffusion 1.5 VAE) is loaded once and kept for the next run, one at
a time, so a queue of protections does not reload it per image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from guard.integrations.comfyui.images import to_pil, to_tensor
from guard.protection.params import DEFAULT_STRENGTH, MODES, PRESETS, Mode, Protection, preset

if TYPE_CHECKING:
    import torch

    from guard.protection.models import ProtectionModel

STRENGTHS = tuple(PRESETS)
__all__ = ["DEFAULT_STRENGTH", "MODES", "STRENGTHS", "protect_images"]

_loaded: dict[tuple[str, str], ProtectionModel] = {}  # at most one: (model, mode) -> model


def protect_images(
    images: torch.Tensor,
    *,
    strength: str = DEFAULT_STRENGTH,
    mode: str = "textural",
    model: str | None = None,
    robust: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, list[Protection]]:
    """Protect each image with the `strength` preset (low, medium, high: guard.protection.PRESETS).
    `on_progress(done, total)` counts optimisation steps over the whole batch."""
    import torch

    from guard.protection import protect

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    eps, steps = preset(strength)
    loaded = _model(model or None, mode)
    count = len(images)
    out: list[torch.Tensor] = []
    records: list[Protection] = []
    for index, image in enumerate(images):

        def tick(done: int, total: int, index: int = index) -> None:
            if on_progress is not None:
                on_progress(index * total + done, count * total)

        result = protect(
            to_pil(image),
            model=loaded,
            mode=mode,
            eps=eps,
            steps=steps,
            robust=robust,
            progress=False,
            on_progress=tick,
        )
        out.append(to_tensor([result.image]))
        records.append(result.record)
    return torch.cat(out), records


def _model(model: str | None, mode: Mode) -> ProtectionModel:
    from guard.protection import load_model

    key = (model or "", mode)
    if key not in _loaded:
        _loaded.clear()  # one model in memory at a time, beside ComfyUI's own
        _loaded[key] = load_model(model, mode=mode)
    return _loaded[key]
