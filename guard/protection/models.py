"""Turn a --model reference (hub id, diffusers folder, single-file checkpoint) into a Surrogate.

The encoder is the model's VAE (AutoencoderKL or AutoencoderTiny); semantic and fused modes also
need its UNet and noise schedule. Loading errors become guard's one actionable ModelNotFoundError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from guard import modelref

if TYPE_CHECKING:
    from guard.protection.attacks import Surrogate

# Same default as `guard generate`: its VAE (subfolder vae/) is the SD 1.5-family VAE.
DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"


class VaeEncoder(nn.Module):
    """[0,1] image -> unscaled latent mean, whatever the VAE class (taesd encoders want [-1,1] too)."""

    vae: Any  # a diffusers VAE: encode() is its own, not nn.Module's

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = next(self.vae.parameters()).dtype
        out = self.vae.encode((x * 2 - 1).to(dtype))
        latent = out.latent_dist.mean if hasattr(out, "latent_dist") else out.latents
        return latent.float()


class VaeDecoder(nn.Module):
    vae: Any  # a diffusers VAE: decode() is its own, not nn.Module's

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        dtype = next(self.vae.parameters()).dtype
        return ((self.vae.decode(z.to(dtype)).sample.float() + 1) / 2).clamp(0, 1)


class NoisePredictor(nn.Module):
    """A UNet2DConditionModel with a fixed (empty-prompt) conditioning: (noisy latent, t) -> pred."""

    cond: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, unet: nn.Module, cond: torch.Tensor) -> None:
        super().__init__()
        self.unet = unet
        self.register_buffer("cond", cond)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond = self.cond.expand(z.shape[0], -1, -1).to(z.dtype)
        return self.unet(z, t, encoder_hidden_states=cond).sample


@dataclass(frozen=True)
class ProtectionModel:
    """A surrogate loaded once (by `guard.protection.load_model`) and reused for many images."""

    surrogate: Surrogate
    name: str
    device: torch.device

    @property
    def has_unet(self) -> bool:
        return self.surrogate.unet is not None


def pick_device(device: str | torch.device | None) -> torch.device:
    """guard's one device picker (guard.devices), as the torch.device the attacks run on."""
    from guard import devices

    return torch.device(devices.pick_device(device))


def surrogate_from_modules(
    vae: nn.Module | None = None,
    *,
    encoder: nn.Module | None = None,
    decoder: nn.Module | None = None,
    unet: nn.Module | None = None,
    scheduler: Any = None,
    cond: torch.Tensor | None = None,
) -> Surrogate:
    """Build the Surrogate from a diffusers VAE, or from a bare encoder (and optional decoder)."""
    from guard.protection.attacks import Surrogate

    scaling = 1.0
    if vae is not None:
        encoder = encoder or VaeEncoder(vae)
        decoder = decoder or (VaeDecoder(vae) if hasattr(vae, "decode") else None)
        scaling = float(getattr(vae.config, "scaling_factor", 1.0) or 1.0)
    if encoder is None:
        raise ValueError("protection needs an encoder: pass model=, encoder= or a VAE")
    predictor, alphas, prediction = None, None, "epsilon"
    if unet is not None:
        if isinstance(unet, NoisePredictor) or not hasattr(unet, "config"):
            predictor = unet
        else:
            if cond is None:
                config: Any = unet.config  # a diffusers model's FrozenDict config
                dim = config.cross_attention_dim
                dim = dim[0] if isinstance(dim, list | tuple) else dim
                cond = torch.zeros(1, 77, dim)
            predictor = NoisePredictor(unet, cond)
        if scheduler is not None:
            alphas = scheduler.alphas_cumprod.float()
            prediction = scheduler.config.get("prediction_type", "epsilon")
    return Surrogate(
        encoder,
        decoder,
        predictor,
        alphas_cumprod=alphas,
        scaling=scaling,
        prediction_type=prediction,
    )


def _vae_class(config: Path):
    from diffusers import AutoencoderKL, AutoencoderTiny

    name = json.loads(config.read_text()).get("_class_name", "AutoencoderKL")
    return AutoencoderTiny if name == "AutoencoderTiny" else AutoencoderKL


def load_surrogate(
    model: str | Path | None, *, need_unet: bool, device: torch.device
) -> tuple[Surrogate, str]:
    """Load the VAE (and UNet when `need_unet`) of `model`; returns the surrogate and the model's name."""
    ref = modelref.resolve(model or DEFAULT_MODEL)
    half = device.type == "cuda"
    with modelref.loading(ref, "protection model"):
        vae, unet, scheduler, cond = _load(ref, need_unet)
    vae_dtype = torch.float16 if half and not getattr(vae.config, "force_upcast", False) else None
    vae.to(device=device, dtype=vae_dtype)
    if unet is not None:
        unet.to(device=device, dtype=torch.float16 if half else None)
    s = surrogate_from_modules(vae, unet=unet, scheduler=scheduler, cond=cond)
    return s.to(device).eval(), ref.name


def _load(ref: modelref.ModelRef, need_unet: bool):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    unet = scheduler = cond = None
    if ref.kind == "single_file":
        vae = AutoencoderKL.from_single_file(str(ref.path))
        if need_unet:
            unet = UNet2DConditionModel.from_single_file(str(ref.path))
        return vae, unet, scheduler, cond

    root = str(ref.path) if ref.path is not None else ref.raw
    sub = None
    if ref.path is not None:
        if (ref.path / "vae" / "config.json").is_file():
            sub = "vae"
        elif not (ref.path / "config.json").is_file():
            raise FileNotFoundError(f"no vae/config.json or config.json in {ref.path}")
        vae_cls = _vae_class(ref.path / (sub or "") / "config.json")
        vae = vae_cls.from_pretrained(root, subfolder=sub)
    else:
        try:  # a pipeline repo has vae/, a VAE-only repo (e.g. sd-vae-ft-mse) has it at the root
            vae = AutoencoderKL.from_pretrained(root, subfolder="vae")
        except OSError:
            if need_unet:
                raise
            vae = AutoencoderKL.from_pretrained(root)
    if need_unet:
        if ref.path is not None and sub is None:
            raise FileNotFoundError(
                f"{ref.path} holds a VAE only; semantic and fused modes need a full diffusion "
                "model folder (with unet/ and scheduler/)"
            )
        unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet")
        scheduler = DDPMScheduler.from_pretrained(root, subfolder="scheduler")
        cond = _empty_prompt(root)
    return vae, unet, scheduler, cond


def _empty_prompt(root: str) -> torch.Tensor | None:
    """The text encoder's embedding of "" (what AdvDM conditions on), when the model has one."""
    try:
        from transformers import CLIPTextModel, CLIPTokenizer

        tok = CLIPTokenizer.from_pretrained(root, subfolder="tokenizer")
        te = CLIPTextModel.from_pretrained(root, subfolder="text_encoder")
    except (OSError, ValueError):
        return None
    ids = tok("", padding="max_length", max_length=tok.model_max_length, return_tensors="pt")
    with torch.no_grad():
        return te(ids.input_ids)[0].float()
