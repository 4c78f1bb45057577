"""The protection attacks, as torchattacks attacks (device handling, set_normalization_used, save).

All three share one optimiser loop over a perturbation delta with |delta| <= eps; they differ in
the objective they maximise:

- textural: with a decoder, the reconstruction error ||D(E(x + delta)) - x||^2 (plus a pull of the
  latent towards the target pattern's latent); without one, Mist's pull alone. Measured on taef2,
  maximising the reconstruction error directly does at eps 8/255 in 8 steps what Mist's latent pull
  does not reach at eps 16/255 in 100 (docs/benchmarks.md#protect).
- semantic: the denoiser's loss at random timesteps (AdvDM, Mist's semantic mode).
- fused: the sum of the two, each divided by its value on the clean image.

Large images are processed tile by tile *inside* each step: gradients of overlapping tiles are summed
into one global delta, so memory is bounded by a tile and there are no seams between tiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchattacks.attack import Attack

from guard.protection.transforms import EOT, NoTransform

OPTIMISERS = ("sign", "sign-cosine", "momentum", "adam")
Window = tuple[int, int, int, int]  # top, left, height, width


class Surrogate(nn.Module):
    """The differentiable parts of a latent diffusion model that protection attacks.

    encoder: (N,3,H,W) in [0,1] -> latent. decoder (optional): latent -> image in [0,1].
    unet (optional): (noisy scaled latent, timesteps) -> prediction, with `alphas_cumprod` of its
    noise schedule, `scaling` of the latent and `prediction_type` ('epsilon' or 'v_prediction').
    """

    alphas_cumprod: torch.Tensor  # a buffer (register_buffer), so it follows .to(device)

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module | None = None,
        unet: nn.Module | None = None,
        *,
        alphas_cumprod: torch.Tensor | None = None,
        scaling: float = 1.0,
        prediction_type: str = "epsilon",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.unet = unet
        if unet is not None and alphas_cumprod is None:
            alphas_cumprod = _sd_alphas_cumprod()
        self.register_buffer(
            "alphas_cumprod", alphas_cumprod if alphas_cumprod is not None else torch.ones(1)
        )
        self.scaling = scaling
        self.prediction_type = prediction_type
        self.requires_grad_(False)  # only the image gets gradients: half the backward work

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def train(self, mode: bool = True) -> Surrogate:
        """torchattacks switches the model to eval; torch.export programs refuse train()/eval()."""
        self.training = mode
        for child in self.children():
            try:
                child.train(mode)
            except NotImplementedError:
                pass
        return self


def _sd_alphas_cumprod(steps: int = 1000) -> torch.Tensor:
    """Stable Diffusion's scaled-linear schedule, for a UNet given without its scheduler."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def windows(h: int, w: int, tile: int | None, overlap: int = 64) -> list[Window]:
    """Tiles (multiples of 8) covering an h x w image; one window when it fits."""
    if tile is None or (h <= tile and w <= tile):
        return [(0, 0, h, w)]

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        count = math.ceil((n - overlap) / (tile - overlap))
        stride = (n - tile) / (count - 1)
        return sorted({min(n - tile, round(i * stride / 8) * 8) for i in range(count)})

    th, tw = min(tile, h), min(tile, w)
    return [(t, left, th, tw) for t in starts(h) for left in starts(w)]


class ProtectionAttack(Attack):
    """L-inf bounded perturbation maximising `objective`, with EOT and tiling. Subclasses define
    `objective(x_adv, x_ref, window, step)`; `prepare(x, window)` caches per-tile constants."""

    def __init__(
        self,
        model: Surrogate,
        *,
        eps: float = 8 / 255,
        steps: int = 8,
        step_size: float | None = None,
        optimiser: str = "sign-cosine",
        robust: bool = True,
        mask: torch.Tensor | None = None,
        grey: bool = False,
        tile: int | None = None,
        seed: int = 0,
        on_step: Callable[[int], None] | None = None,
        eot: str = "cycle",
        scale: int = 1,
        bf16: bool = False,
    ) -> None:
        super().__init__(type(self).__name__, model)
        if optimiser not in OPTIMISERS:
            raise ValueError(f"optimiser must be one of {OPTIMISERS}")
        if eot not in EOT:
            raise ValueError(f"eot must be one of {', '.join(EOT)}")
        if scale < 1:
            raise ValueError("scale must be >= 1")
        self.eps, self.steps, self.optimiser = eps, steps, optimiser
        self.step_size = step_size if step_size is not None else eps / 2
        self.transform = EOT[eot](seed) if robust else NoTransform()
        self.scale, self.bf16 = scale, bf16
        self.mask, self.grey, self.tile, self.seed = mask, grey, tile, seed
        self.on_step = on_step
        self._cache: dict[Window, dict[str, Any]] = {}
        self._clean = torch.zeros(0)

    # -- subclass interface -------------------------------------------------------------------
    def prepare(self, x: torch.Tensor, window: Window) -> dict[str, Any]:
        return {}

    def objective(
        self, x_adv: torch.Tensor, x_ref: torch.Tensor, window: Window, step: int
    ) -> torch.Tensor:
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------------
    @property
    def surrogate(self) -> Surrogate:
        return self.model

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.get_logits(x)  # applies torchattacks' normalisation when one is set

    def constants(self, window: Window) -> dict[str, Any]:
        """Per-tile constants (target latent, loss scales) computed once on the clean image."""
        if window not in self._cache:
            with torch.no_grad():
                self._cache[window] = self.prepare(self._clean, window)
        return self._cache[window]

    def step_length(self, i: int) -> float:
        if self.optimiser == "sign":
            return self.step_size
        return self.step_size * 0.5 * (1 + math.cos(math.pi * i / self.steps))

    # -- the loop -----------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, labels: Any = None) -> torch.Tensor:
        x = images.detach().to(self.device).float()
        n, _, h, w = x.shape
        tiles = windows(h, w, self.tile)
        c = 1 if self.grey else 3
        # The perturbation lives at 1/scale of the resolution and is upsampled (bilinear) onto the
        # image: larger, smoother structure that downscaling, JPEG and filters keep.
        delta = torch.zeros(n, c, -(-h // self.scale), -(-w // self.scale), device=x.device)
        mask = self.mask.to(x.device).float() if self.mask is not None else None
        m = torch.zeros_like(delta)
        v = torch.zeros_like(delta)
        self._cache, self._clean = {}, x
        for i in range(self.steps):
            full = self.expand(delta, (h, w), mask).detach()
            grad = torch.zeros_like(full)
            for win in tiles:
                t, left, th, tw = win
                d = full[..., t : t + th, left : left + tw].clone().requires_grad_(True)
                xr = x[..., t : t + th, left : left + tw]
                xa = (xr + d).clamp(0, 1).contiguous(memory_format=torch.channels_last)
                with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    loss = self.objective(xa, xr, win, i).float()
                (g,) = torch.autograd.grad(loss, d)
                grad[..., t : t + th, left : left + tw] += g.float()
            if self.scale > 1:  # the gradient of the low-resolution perturbation
                low = delta.clone().requires_grad_(True)
                (grad,) = torch.autograd.grad(self.expand(low, (h, w), None), low, grad)
            with torch.no_grad():
                delta = self._update(delta, grad, i, m, v)
                delta = delta.clamp(-self.eps, self.eps)
                if self.scale == 1:
                    base = x[:, :1] if self.grey else x
                    delta = (base + delta).clamp(0, 1) - base
            if self.on_step is not None:
                self.on_step(len(tiles))
        with torch.no_grad():
            return (x + self.expand(delta, (h, w), mask)).clamp(0, 1).detach()

    def expand(
        self, delta: torch.Tensor, size: tuple[int, int], mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The full-resolution perturbation of the (possibly low-resolution) `delta`."""
        if self.scale > 1:
            delta = F.interpolate(
                delta, scale_factor=self.scale, mode="bilinear", align_corners=False
            )[..., : size[0], : size[1]]
        return delta * mask if mask is not None else delta

    def _update(
        self, delta: torch.Tensor, g: torch.Tensor, i: int, m: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        a = self.step_length(i)
        if self.optimiser == "momentum":  # MI-FGSM: accumulate L1-normalised gradients
            m.mul_(0.9).add_(g / (g.abs().mean() + 1e-12))
            return delta + a * m.sign()
        if self.optimiser == "adam":
            m.mul_(0.9).add_(0.1 * g)
            v.mul_(0.999).add_(0.001 * g * g)
            mh, vh = m / (1 - 0.9 ** (i + 1)), v / (1 - 0.999 ** (i + 1))
            return delta + a * mh / (vh.sqrt() + 1e-12)
        return delta + a * g.sign()

    def apply_transform(
        self, x_adv: torch.Tensor, x_ref: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        xt, cut = self.transform(x_adv, step)
        return xt, cut(x_ref)


def _crop(t: torch.Tensor, window: Window, scale: int = 1) -> torch.Tensor:
    top, left, h, w = (v // scale for v in window)
    return t[..., top : top + h, left : left + w]


class TexturalAttack(ProtectionAttack):
    """Disrupt the autoencoder: push the reconstruction away from the image and the latent towards
    `target`'s. Without a decoder this is Mist's textural attack (latent pull only)."""

    def __init__(
        self,
        model: Surrogate,
        *,
        target: torch.Tensor | None = None,
        target_weight: float = 1.0,
        use_decoder: bool = True,
        decoder_every: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        self.decoder_every = max(1, decoder_every)
        self._latent_grad: dict[Window, torch.Tensor] = {}
        self.target = target
        self.target_weight = target_weight
        self.use_decoder = use_decoder and model.decoder is not None
        if not self.use_decoder and target is None:
            raise ValueError("textural attack without a decoder needs a target pattern")

    def prepare(self, x: torch.Tensor, window: Window) -> dict[str, Any]:
        xr = _crop(x, window)
        c: dict[str, Any] = {}
        z0 = self.encode(xr)
        if self.target is not None:
            tgt = _crop(self.target.to(x.device).float(), window)
            c["zt"] = self.encode(tgt.expand_as(xr))
            c["zt_scale"] = F.mse_loss(z0.float(), c["zt"].float()).clamp_min(1e-8)
        if self.use_decoder:
            rec = self._decoder(z0).float()
            c["rec_scale"] = F.mse_loss(rec, xr).clamp_min(1e-4)
        return c

    def textural(self, x_adv: torch.Tensor, x_ref: torch.Tensor, window: Window, step: int):
        c = self.constants(window)
        xt, ref = self.apply_transform(x_adv, x_ref, step)
        z = self.encode(xt).float()
        loss = torch.zeros((), device=z.device)
        g = self._latent_grad.get(window)
        if self.use_decoder and g is not None and step % self.decoder_every:
            # between decoder steps: the decoder linearised at the last one, so a step costs
            # the encoder's forward and backward only
            loss = loss + (z * g).sum()
        elif self.use_decoder:
            if self.decoder_every > 1 and z.requires_grad:
                z.register_hook(lambda grad: self._latent_grad.__setitem__(window, grad.detach()))
            rec = self._decoder(z.to(self._dtype(self._decoder))).float()
            loss = loss + F.mse_loss(rec, ref) / c["rec_scale"]
        if self.target is not None:
            zt = c["zt"].float()
            if zt.shape[-2:] != z.shape[-2:]:  # the JPEG step's grid shift cut the image
                zt = zt[..., : z.shape[-2], : z.shape[-1]]
            weight = self.target_weight if self.use_decoder else 1.0
            loss = loss - weight * F.mse_loss(z, zt) / c["zt_scale"]
        return loss

    def objective(self, x_adv, x_ref, window, step):
        return self.textural(x_adv, x_ref, window, step)

    @property
    def _decoder(self) -> nn.Module:
        """The surrogate's decoder, used only when `use_decoder` (which __init__ sets only then)."""
        decoder = self.surrogate.decoder
        assert decoder is not None
        return decoder

    @staticmethod
    def _dtype(module: nn.Module) -> torch.dtype:
        p = next(module.parameters(), None)
        return p.dtype if p is not None else torch.float32


class SemanticAttack(ProtectionAttack):
    """AdvDM: maximise the denoiser's training loss at random timesteps, so fine-tuning on the
    image learns noise and img2img cannot denoise it faithfully."""

    def __init__(self, model: Surrogate, **kwargs: Any) -> None:
        if model.unet is None:
            raise ValueError("semantic protection needs a UNet (pass a full diffusion model)")
        super().__init__(model, **kwargs)
        self.generator = torch.Generator().manual_seed(self.seed)

    def semantic(self, x_adv: torch.Tensor, x_ref: torch.Tensor, step: int) -> torch.Tensor:
        s = self.surrogate
        xt, _ = self.apply_transform(x_adv, x_ref, step)
        z = self.encode(xt).float() * s.scaling
        n = z.shape[0]
        t = torch.randint(0, len(s.alphas_cumprod), (n,), generator=self.generator)
        noise = torch.randn(z.shape, generator=self.generator).to(z.device)
        t = t.to(z.device)
        ac = s.alphas_cumprod.to(z.device)[t].view(n, 1, 1, 1)
        noisy = ac.sqrt() * z + (1 - ac).sqrt() * noise
        unet = s.unet
        assert unet is not None  # __init__ refused a surrogate without one
        pred = unet(noisy.to(TexturalAttack._dtype(unet)), t).float()
        target = (
            noise if s.prediction_type == "epsilon" else ac.sqrt() * noise - (1 - ac).sqrt() * z
        )
        return F.mse_loss(pred, target)

    def objective(self, x_adv, x_ref, window, step):
        return self.semantic(x_adv, x_ref, step)


class FusedAttack(TexturalAttack, SemanticAttack):
    """Mist's fused mode: textural and semantic objectives, each normalised on the clean image."""

    def __init__(self, model: Surrogate, *, semantic_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.semantic_weight = semantic_weight

    def prepare(self, x: torch.Tensor, window: Window) -> dict[str, Any]:
        c = TexturalAttack.prepare(self, x, window)
        xr = _crop(x, window)
        c["sem_scale"] = self.semantic(xr, xr, 0).detach().clamp_min(1e-6)
        return c

    def objective(self, x_adv, x_ref, window, step):
        c = self.constants(window)
        tex = self.textural(x_adv, x_ref, window, step)
        sem = self.semantic(x_adv, x_ref, step) / c["sem_scale"]
        return tex + self.semantic_weight * sem


ATTACKS: dict[str, type[ProtectionAttack]] = {
    "textural": TexturalAttack,
    "semantic": SemanticAttack,
    "fused": FusedAttack,
}
