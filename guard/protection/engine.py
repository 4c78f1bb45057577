"""protect(): from a PIL image of any size and mode to a protected PIL image of the same size and mode.

Alpha is set aside and put back unchanged; greyscale images get a one-channel perturbation so they
stay grey; sizes are padded (reflect) to a multiple of 8; large images are processed in overlapping
tiles (measured against a lower working resolution in docs/protect.md).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from guard.errors import ImageInputError, TooSmallError
from guard.protection.params import (
    DEFAULT_OPTIMISER,
    MODES,
    Mode,
    Protected,
    Protection,
    default_steps,
)

if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from torch import nn

    from guard.protection.models import ProtectionModel

MIN_SIDE = 64
# Tile side per device, for bounded memory. Measured on CPU: the SD 1.5 VAE's encoder+decoder
# forward+backward adds 2.4 GiB at a 256^2 tile (activations grow with area: ~9.5 GiB at 512^2),
# so full-size VAEs get 256 px tiles on CPU; small encoders such as taesd/taef2 stay far below
# 1 GiB at 512^2.
TILE = {"cpu": 512, "mps": 512, "cuda": 1024}
BIG_VAE_CPU_TILE = 256
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F", "La"}


@dataclass
class Prepared:
    rgb: np.ndarray  # H x W x 3 float32 in [0, 1]
    alpha: Image.Image | None
    grey: bool
    mode: str


def prepare(image: Image.Image) -> Prepared:
    """Split alpha and decide grey/colour; refuse images too small to protect."""
    if not isinstance(image, Image.Image):
        raise ImageInputError(f"protect expects a PIL image, got {type(image).__name__}")
    w, h = image.size
    if min(w, h) < MIN_SIDE:
        raise TooSmallError(
            f"image is {w}x{h} px; protection needs at least {MIN_SIDE} px on each side "
            "(the autoencoder sees an 8x smaller latent). Protect the full-size artwork instead."
        )
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    alpha = image.getchannel("A") if mode in ("RGBA", "LA", "La", "RGBa", "PA") else None
    grey = mode in GREY_MODES
    if grey:
        lum = image.convert("L") if mode not in ("I;16", "I", "F") else _eight_bit(image)
        rgb = np.repeat(np.asarray(lum, dtype=np.float32)[..., None], 3, axis=2) / 255
        out_mode = "LA" if alpha is not None else "L"
    else:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
        out_mode = "RGBA" if alpha is not None else "RGB"
    return Prepared(rgb, alpha, grey, out_mode)


def _eight_bit(image: Image.Image) -> Image.Image:
    a = np.asarray(image, dtype=np.float64)
    top = 65535.0 if a.max() > 255 else 255.0
    return Image.fromarray((a / top * 255).round().clip(0, 255).astype(np.uint8), "L")


def _mask_array(mask: Any, size: tuple[int, int]) -> np.ndarray:
    if isinstance(mask, Image.Image):
        if mask.size != size:
            raise ImageInputError(
                f"mask is {mask.size[0]}x{mask.size[1]}, image is {size[0]}x{size[1]}"
            )
        return np.asarray(mask.convert("L"), dtype=np.float32) / 255
    arr = np.asarray(mask, dtype=np.float32)
    if arr.shape != (size[1], size[0]):
        raise ImageInputError(f"mask has shape {arr.shape}, expected {(size[1], size[0])} (H, W)")
    return arr.clip(0, 1) if arr.max() <= 1 else (arr > 0).astype(np.float32)


def protect(
    image: Image.Image,
    *,
    model: str | Path | ProtectionModel | None = None,
    encoder: nn.Module | None = None,
    decoder: nn.Module | None = None,
    unet: nn.Module | None = None,
    mode: Mode = "textural",
    eps: float = 9.5 / 255,
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
    eot: str = "purify",
    scale: int = 2,
    bf16: bool | None = None,
    decoder_every: int = 2,
) -> Protected:
    """Return `image` with an adversarial perturbation of at most `eps` per pixel (0-1 scale),
    and the record of the run (`Protected.image`, `Protected.record`).

    model: hub id, diffusers folder or single-file checkpoint whose VAE (and, for semantic/fused,
        UNet) is attacked, or a `load_model()` result; default: the SD 1.5 VAE. Or pass `encoder`
        ((N,3,H,W) in [0,1] -> latent), optionally `decoder` (latent -> image; makes the textural
        attack much stronger) and `unet` (a diffusers UNet2DConditionModel, or a module
        (noisy latent, t) -> noise).
    mode: 'textural' (disrupt the autoencoder), 'semantic' (disrupt the denoiser) or 'fused'.
    steps: default from the eps preset (8 at the medium eps, 9.5/255). target: pattern for the latent pull
        (default: guard's stripes). mask: same-size L image or HxW array; protects where > 0.
    robust: optimise over JPEG/resize/crop so the protection survives re-encoding.
    progress: a tqdm bar (a string names it); on_progress(done, total) is called after each
        optimisation step, for front ends that show their own progress.
    optimiser: 'sign-cosine', 'sign', 'momentum' or 'adam'. strategy: 'tiles' (full resolution,
        overlapping tiles of side `tile`) or 'resize' (one pass at a working resolution).
    eot: the transformations optimised over when `robust` ('purify': identity, JPEG, resize,
        noise and the noise-resize-JPEG chain; 'cycle': the first three). scale: the perturbation
        is made at 1/scale of the resolution and upsampled (2: smoother, survives purification
        better at the same visibility; 1: per pixel). bf16: bfloat16 autocast for the model
        (default: on a CPU with native bfloat16, where it is about 1.6x faster; emulated, it is
        far slower; CUDA already runs fp16 weights).
        decoder_every: k > 1 runs the decoder every k-th step only, linearised in between
        (default 2: half the decoder passes, -0.5 dB of drop).
        (All measured in docs/protect.md.)
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from guard.devices import cpu_has_fast_bf16
    from guard.progress import disable as bar_disable
    from guard.protection.attacks import ATTACKS
    from guard.protection.heap import keep_freed_memory
    from guard.protection.models import (
        ProtectionModel,
        load_surrogate,
        pick_device,
        surrogate_from_modules,
    )
    from guard.protection.targets import target_pattern

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if not 0 < eps <= 64 / 255:
        raise ValueError(
            f"eps must be in (0, 64/255]; got {eps} (eps is in [0,1] units: 8/255 ~ 0.031)"
        )
    if strategy not in ("tiles", "resize"):
        raise ValueError("strategy must be 'tiles' or 'resize'")
    steps = steps or default_steps(eps)
    if scale < 1:
        raise ValueError("scale must be >= 1")
    prep = prepare(image)
    w, h = image.size
    if isinstance(model, ProtectionModel):  # loaded once by a batch caller or a server
        sur, model_name, dev = model.surrogate, model.name, model.device
    elif encoder is None and unet is None:
        dev = pick_device(device)
        sur, model_name = load_surrogate(model, need_unet=mode != "textural", device=dev)
    else:
        dev = pick_device(device)
        sur = surrogate_from_modules(encoder=encoder, decoder=decoder, unet=unet).to(dev)
        model_name = str(model) if model else type(encoder).__name__
    if mode != "textural" and sur.unet is None:
        raise ValueError(f"{mode} protection needs a UNet: pass unet= or a full diffusion --model")

    x = torch.from_numpy(prep.rgb).permute(2, 0, 1)[None].to(dev)
    work = x
    if strategy == "resize" and max(h, w) > (tile or TILE.get(dev.type, 512)):
        s = (tile or TILE.get(dev.type, 512)) / max(h, w)
        work = F.interpolate(
            x, scale_factor=s, mode="bilinear", antialias=True, align_corners=False
        )
    wh, ww = work.shape[-2:]
    ph, pw = (-wh) % 8, (-ww) % 8
    padded = F.pad(work, (0, pw, 0, ph), mode="reflect") if ph or pw else work

    mask_t = None
    if mask is not None:
        m = torch.from_numpy(_mask_array(mask, (w, h)))[None, None].to(dev)
        m = F.interpolate(m, size=(wh, ww), mode="bilinear") if (wh, ww) != (h, w) else m
        mask_t = F.pad(m, (0, pw, 0, ph)) if ph or pw else m
    target_t = None
    # With a decoder the reconstruction term does the work: guard's own pattern pull measured
    # 0.1 dB weaker, so it is used only without a decoder or when the caller brings a target.
    use_target = mode != "semantic" and (target is not None or sur.decoder is None)
    if use_target:
        pat = target if target is not None else target_pattern(ww + pw, wh + ph)
        pat = pat.convert("RGB").resize((ww + pw, wh + ph), Image.Resampling.BICUBIC)
        target_t = torch.from_numpy(np.asarray(pat, dtype=np.float32) / 255).permute(2, 0, 1)[None]

    tile_side = None if strategy == "resize" else (tile or _default_tile(sur, dev.type))
    from guard.protection.attacks import windows

    n_win = len(windows(wh + ph, ww + pw, tile_side))
    desc = progress if isinstance(progress, str) else "protect"
    total = steps * n_win
    bar = tqdm(total=total, desc=desc, unit="step", disable=bar_disable(progress), leave=False)
    done = 0

    def on_step(n: int) -> None:
        nonlocal done
        done += n
        bar.update(n)
        if on_progress is not None:
            on_progress(min(done, total), total)

    kwargs: dict[str, Any] = dict(
        eps=eps,
        steps=steps,
        optimiser=optimiser,
        robust=robust,
        mask=mask_t,
        grey=prep.grey,
        tile=tile_side,
        seed=seed,
        on_step=on_step,
        eot=eot,
        scale=scale,
        bf16=(dev.type == "cpu" and cpu_has_fast_bf16()) if bf16 is None else bf16,
    )
    if mode != "semantic":
        kwargs["decoder_every"] = decoder_every
    if target_t is not None:  # set exactly when use_target
        kwargs["target"] = target_t.to(dev)
    attack = ATTACKS[mode](sur, **kwargs)
    try:
        with keep_freed_memory() if dev.type == "cpu" else nullcontext():
            adv = attack(padded, None)
    finally:
        bar.close()
    delta = (adv - padded)[..., :wh, :ww]
    if (wh, ww) != (h, w):
        delta = F.interpolate(delta, size=(h, w), mode="bilinear", align_corners=False)
    delta = delta.clamp(-eps, eps)
    out = (x + delta).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
    out8 = (out * 255).round().astype(np.uint8)
    result = _compose(out8, prep)
    record = Protection(
        mode=mode,
        eps=eps,
        steps=steps,
        robust=robust,
        model=model_name,
        optimiser=optimiser,
        objective="reconstruction"
        if sur.decoder is not None and mode != "semantic"
        else ("denoiser" if mode == "semantic" else "latent-target"),
        strategy=strategy,
        eot=eot,
        scale=scale,
    )
    return Protected(result, record)


def work_units(size: tuple[int, int], model: ProtectionModel, steps: int) -> int:
    """Progress units (steps x tiles) that protect() reports for an image of `size` (w, h) with
    the default tiling: what a batch's one progress bar adds up."""
    from guard.protection.attacks import windows

    w, h = size
    tile = _default_tile(model.surrogate, model.device.type)
    return steps * len(windows(h + (-h) % 8, w + (-w) % 8, tile))


def _default_tile(sur: Any, device_type: str) -> int:
    vae = getattr(sur.encoder, "vae", None)
    if device_type == "cpu" and type(vae).__name__ == "AutoencoderKL":
        return BIG_VAE_CPU_TILE
    return TILE.get(device_type, 512)


def _compose(out8: np.ndarray, prep: Prepared) -> Image.Image:
    im = Image.fromarray(out8[..., 0], "L") if prep.grey else Image.fromarray(out8, "RGB")
    if prep.alpha is not None:
        im.putalpha(prep.alpha)
    return im
