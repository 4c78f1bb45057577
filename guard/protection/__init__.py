"""Mist-style adversarial protection: images that look unchanged to people but that latent
diffusion models encode, learn from and edit badly.

`protect()` turns pixels into protected pixels; `protect_file()` (in `workflow`) is the artist's
whole job, from an artwork file to a signed "do not train" PNG. Nothing here imports torch until
one of them runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from guard.protection.params import (
    ASSERTION_LABEL,
    DEFAULT_OPTIMISER,
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
    from PIL import Image
    from torch import nn

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


def protect(
    image: Image.Image,
    *,
    model: str | Path | ProtectionModel | None = None,
    encoder: nn.Module | None = None,
    decoder: nn.Module | None = None,
    unet: nn.Module | None = None,
    mode: Mode = "textural",
    eps: float = 8 / 255,
    steps: int | None = None,
    target: Image.Image | None = None,
    mask: Any = None,
    robust: bool = True,
    device: str | torch.device | None = None,
    progress: bool | str = True,
    on_progress: Callable[[int, int], None] | None = None,
    optimiser: str = DEFAULT_OPTIMISER,
    strategy: Literal["tiles", "resize"] = "tiles",
    tile: int | None = None,
    seed: int = 0,
) -> Protected:
    """Return `image` with an adversarial perturbation of at most `eps` per pixel (0-1 scale),
    and the record of the run (`Protected.image`, `Protected.record`).

    model: hub id, diffusers folder or single-file checkpoint whose VAE (and, for semantic/fused,
        UNet) is attacked, or a `load_model()` result; default: the SD 1.5 VAE. Or pass `encoder`
        ((N,3,H,W) in [0,1] -> latent), optionally `decoder` (latent -> image; makes the textural
        attack much stronger) and `unet` (a diffusers UNet2DConditionModel, or a module
        (noisy latent, t) -> noise).
    mode: 'textural' (disrupt the autoencoder), 'semantic' (disrupt the denoiser) or 'fused'.
    steps: default from the eps preset (8 at eps 8/255). target: pattern for the latent pull
        (default: guard's stripes). mask: same-size L image or HxW array; protects where > 0.
    robust: optimise over JPEG/resize/crop so the protection survives re-encoding.
    progress: a tqdm bar (a string names it); on_progress(done, total) is called after each
        optimisation step, for front ends that show their own progress.
    optimiser: 'sign-cosine', 'sign', 'momentum' or 'adam'. strategy: 'tiles' (full resolution,
        overlapping tiles of side `tile`) or 'resize' (one pass at a working resolution).
    """
    from guard.protection.engine import protect_image

    return protect_image(
        image,
        model=model,
        encoder=encoder,
        decoder=decoder,
        unet=unet,
        mode=mode,
        eps=eps,
        steps=steps,
        target=target,
        mask=mask,
        robust=robust,
        device=device,
        progress=progress,
        on_progress=on_progress,
        optimiser=optimiser,
        strategy=strategy,
        tile=tile,
        seed=seed,
    )
