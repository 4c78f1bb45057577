"""Mist-style adversarial protection: images that look unchanged to people but that latent
diffusion models encode, learn from and edit badly.

`protect()` turns pixels into protected pixels; `protect_file()` (in `workflow`) is the artist's
whole job, from an artwork file to a signed "do not train" PNG. Nothing here imports torch until
one of them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guard.protection.engine import protect
from guard.protection.params import (
    ASSERTION_LABEL,
    DEFAULT_STRENGTH,
    MODES,
    PRESETS,
    Mode,
    Protected,
    Protection,
    preset,
)

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from guard.protection.models import ProtectionModel

__all__ = [
    "ASSERTION_LABEL",
    "DEFAULT_STRENGTH",
    "MODES",
    "PRESETS",
    "Protected",
    "Protection",
    "load_model",
    "preset",
    "protect",
]


def load_model(
    model: str | Path | None = None,
    *,
    mode: Mode = "textural",
    device: str | torch.device | None = None,
) -> ProtectionModel:
    """Load the model to protect against once, for many `protect`/`protect_file` calls.

    model: hub id, diffusers folder or single-file checkpoint (default: SD 1.5); semantic and
    fused modes also load its UNet.
    """
    from guard.protection.models import ProtectionModel, load_surrogate, pick_device

    dev = pick_device(device)
    surrogate, name = load_surrogate(model, need_unet=mode != "textural", device=dev)
    return ProtectionModel(surrogate, name, dev)
