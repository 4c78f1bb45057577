"""Mist-style adversarial protection: images that look unchanged to people but that latent
diffusion models encode, learn from and edit badly.

`protect()` is the library entry point; nothing here imports torch until it is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guard.protection.params import (
    ASSERTION_LABEL,
    DEFAULT_STRENGTH,
    MODES,
    PRESETS,
    Protection,
    preset,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

__all__ = [
    "ASSERTION_LABEL",
    "DEFAULT_STRENGTH",
    "MODES",
    "PRESETS",
    "Protection",
    "preset",
    "protect",
]


def protect(
    image: Image.Image,
    *,
    model: str | None = None,
    encoder: nn.Module | None = None,
    unet: nn.Module | None = None,
    mode: str = "textural",
    eps: float = 8 / 255,
    steps: int | None = None,
    target: Image.Image | None = None,
    mask: Any = None,
    robust: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    decoder: nn.Module | None = None,
    **advanced: Any,
) -> Image.Image:
    """Return `image` with an adversarial perturbation of at most `eps` per pixel (0-1 scale).

    model: hub id, diffusers folder or single-file checkpoint whose VAE (and, for semantic/fused,
        UNet) is attacked; default: the SD 1.5 VAE. Or pass `encoder` ((N,3,H,W) in [0,1] ->
        latent), optionally `decoder` (latent -> image; makes the textural attack much stronger)
        and `unet` (a diffusers UNet2DConditionModel, or a module (noisy latent, t) -> noise).
    mode: 'textural' (disrupt the autoencoder), 'semantic' (disrupt the denoiser) or 'fused'.
    steps: default from the eps preset (8 at eps 8/255). target: pattern for the latent pull
        (default: guard's stripes). mask: same-size L image or HxW array; protects where > 0.
    robust: optimise over JPEG/resize/crop so the protection survives re-encoding.
    advanced: optimiser ('sign-cosine', 'sign', 'momentum', 'adam'), strategy ('tiles' or
        'resize'), tile, seed, return_record (also return the Protection record).
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
        **advanced,
    )
