"""web UI's hires fix: a txt2img image upscaled and refined by a second, img2img pass.

As web UI 1.10 runs it (modules/processing.py, StableDiffusionProcessingTxt2Img):
- target size: `--hires-scale` x the first pass's size, or `--hires-size WxH` (one side 0 keeps the
  aspect ratio; both given: upscale to cover, then crop the latent to the exact size);
- latent upscalers interpolate the first pass's latents (torch's bilinear/bicubic/nearest, with or
  without antialiasing); pixel upscalers decode, resize the picture (Lanczos, Nearest) and encode
  it again;
- the second pass runs exactly `--hires-steps` steps (0: as many as the first pass) of a schedule of
  steps / denoise, starting from fresh noise drawn from each image's seed.
Upscalers that need model weights (ESRGAN, SwinIR, …) are refused with a clear error.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from generator.errors import GenerationError

# web UI's shared.latent_upscale_modes: name -> (torch interpolation mode, antialias)
LATENT_UPSCALERS: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
PIXEL_UPSCALERS = ("None", "Lanczos", "Nearest")  # web UI's built-in, weight-free upscalers
# web UI upscalers that run a neural network whose weights guard does not load
MODEL_UPSCALERS = (
    "ESRGAN_4x",
    "R-ESRGAN 4x+",
    "R-ESRGAN 4x+ Anime6B",
    "R-ESRGAN General 4xV3",
    "R-ESRGAN General WDN 4xV3",
    "R-ESRGAN AnimeVideo",
    "R-ESRGAN 2x+",
    "LDSR",
    "ScuNET",
    "ScuNET PSNR",
    "SwinIR_4x",
    "SwinIR 4x",
    "DAT x2",
    "DAT x3",
    "DAT x4",
    "4x-UltraSharp",
    "4x_foolhardy_Remacri",
)
DEFAULT_UPSCALER = "Latent"
DEFAULT_DENOISE = 0.7  # web UI's default "Denoising strength" for the hires fix


def _key(name: str) -> str:
    return re.sub(r"[\s_\-()]+", " ", name).strip().lower()


def parse_upscaler(name: str) -> str:
    """'latent-bicubic', 'Latent (bicubic)', 'lanczos' -> web UI's spelling of the upscaler."""
    known = [*LATENT_UPSCALERS, *PIXEL_UPSCALERS]
    for canonical in known:
        if _key(name) == _key(canonical):
            return canonical
    valid = ", ".join(f'"{n}"' for n in known)
    if any(_key(name) == _key(m) for m in MODEL_UPSCALERS) or re.search(
        r"esrgan|swinir|scunet|ldsr|\bdat\b|\dx", name, re.I
    ):
        raise GenerationError(
            f"--hires-upscaler {name}: this upscaler runs a neural network whose weights guard "
            f"does not load (it works offline with what it has). Use one of {valid}"
        )
    raise GenerationError(f"--hires-upscaler {name}: unknown upscaler; use one of {valid}")


@dataclass(frozen=True)
class Hires:
    """The hires-fix settings, as web UI's txt2img "Hires. fix" panel has them."""

    scale: float | None = 2.0  # "Upscale by"; ignored when `size` is given
    size: tuple[int, int] | None = None  # "Resize width/height to"; 0 = keep the aspect ratio
    steps: int = 0  # "Hires steps"; 0 = as many as the first pass
    upscaler: str = DEFAULT_UPSCALER
    denoise: float = DEFAULT_DENOISE

    @property
    def latent(self) -> bool:
        return self.upscaler in LATENT_UPSCALERS


@dataclass(frozen=True)
class Target:
    """Where the first pass's picture goes: the upscaled size, then a crop to the final size."""

    upscale_to: tuple[int, int]
    truncate: tuple[int, int]  # latent columns/rows cut (web UI's truncate_x/y)

    @property
    def size(self) -> tuple[int, int]:
        return (
            (self.upscale_to[0] // 8 - self.truncate[0]) * 8,
            (self.upscale_to[1] // 8 - self.truncate[1]) * 8,
        )


def target(width: int, height: int, h: Hires) -> Target:
    """web UI's calculate_target_resolution."""
    if h.size is None or h.size == (0, 0):
        scale = h.scale if h.scale is not None else 2.0
        return Target((int(width * scale), int(height * scale)), (0, 0))
    rx, ry = h.size
    if ry == 0:
        return Target((rx, rx * height // width), (0, 0))
    if rx == 0:
        return Target((ry * width // height, ry), (0, 0))
    wider = width / height < rx / ry  # cover the requested box, then crop the excess
    up = (rx, rx * height // width) if wider else (ry * width // height, ry)
    return Target(up, ((up[0] - rx) // 8, (up[1] - ry) // 8))


def from_options(
    scale: float | None,
    size: str | None,
    steps: int | None,
    upscaler: str | None,
    denoise: float | None,
) -> Hires | None:
    """The `--hires-*` options -> Hires (None: no hires fix). --hires-scale or --hires-size turns
    it on; the others only tune it."""
    if scale is None and size is None:
        given = [
            name
            for name, value in (
                ("--hires-steps", steps),
                ("--hires-upscaler", upscaler),
                ("--hires-denoise", denoise),
            )
            if value is not None
        ]
        if given:
            raise GenerationError(
                f"{given[0]} tunes the hires fix; turn it on with --hires-scale (e.g. 2) or "
                "--hires-size WxH"
            )
        return None
    if scale is not None and size is not None:
        raise GenerationError("give --hires-scale or --hires-size, not both")
    parsed = None
    if size is not None:
        m = re.fullmatch(r"\s*(\d+)\s*[xX×*]\s*(\d+)\s*", size)
        if not m or (int(m.group(1)), int(m.group(2))) == (0, 0):
            raise GenerationError(
                f"--hires-size '{size}': expected WIDTHxHEIGHT, e.g. 1024x1536 (0 for one side "
                "keeps the aspect ratio: 1024x0)"
            )
        parsed = (int(m.group(1)), int(m.group(2)))
    return Hires(
        scale=scale,
        size=parsed,
        steps=steps or 0,
        upscaler=parse_upscaler(upscaler) if upscaler is not None else DEFAULT_UPSCALER,
        denoise=DEFAULT_DENOISE if denoise is None else denoise,
    )


def check_settings(s: Any, max_side: int) -> None:
    """The checks that need no model (validate()); sizes are checked once known (`check`)."""
    h = s.hires
    if h is None:
        return
    if s.init_image is not None:
        raise GenerationError(
            "the hires fix is web UI's txt2img second pass; it does not apply with --init-image "
            "(for img2img, set --size to the size you want)"
        )
    if s.rng == "nv":
        raise GenerationError(
            "--rng nv with the hires fix: its second pass draws noise from a torch generator; "
            "use --rng cpu or gpu"
        )
    if getattr(s, "controls", None):
        raise GenerationError("the hires fix with --control is not supported yet; drop one")
    _check_values(h, max_side)
    if s.width is not None and s.height is not None:
        check(h, s.width, s.height, max_side)


def _check_values(h: Hires, max_side: int) -> None:
    if h.size is None and (h.scale is None or not 1.0 <= h.scale <= 8.0):
        raise GenerationError(f"--hires-scale {h.scale}: use a factor from 1 to 8 (e.g. 2)")
    if h.size is not None and (min(h.size) < 0 or max(h.size) > max_side):
        raise GenerationError(
            f"--hires-size {h.size[0]}x{h.size[1]}: use sizes up to {max_side} (0 keeps the "
            "aspect ratio for that side)"
        )
    if not 0 <= h.steps <= 1000:
        raise GenerationError(f"--hires-steps {h.steps}: use 0 (as many as --steps) to 1000")
    if not 0.0 < h.denoise <= 1.0 or math.isnan(h.denoise):
        raise GenerationError(f"--hires-denoise {h.denoise}: use a value in (0, 1]")
    parse_upscaler(h.upscaler)


def check(h: Hires, width: int, height: int, max_side: int) -> None:
    """The hires settings against the first pass's size."""
    _check_values(h, max_side)
    w, hh = target(width, height, h).size
    if not (8 <= w <= max_side and 8 <= hh <= max_side):
        raise GenerationError(
            f"hires fix: {width}x{height} upscaled comes to {w}x{hh}; the final size must be "
            f"between 8 and {max_side} pixels a side"
        )


def img2img_schedule(steps: int, denoise: float) -> tuple[int, float]:
    """(num_inference_steps, strength) that make diffusers' img2img run exactly `steps` steps
    from where web UI starts them: web UI samples `steps` of a schedule of int(steps / denoise)
    (setup_img2img_steps with fixed steps)."""
    total = max(steps, int(steps / min(denoise, 0.999)))
    # diffusers runs int(total * strength) steps; the half step keeps float error from losing one
    return total, min(1.0, (steps + 0.5) / total)


def infotext_fields(h: Hires) -> dict[str, str]:
    """The fields web UI writes for the hires fix, in its order (Denoising strength comes first,
    with the other core fields)."""
    from guard.webui.infotext import format_number

    out: dict[str, str] = {}
    if h.size is None or h.size == (0, 0):
        out["Hires upscale"] = format_number(float(h.scale if h.scale is not None else 2.0))
    else:
        out["Hires resize"] = f"{h.size[0]}x{h.size[1]}"
    if h.steps:
        out["Hires steps"] = str(h.steps)
    out["Hires upscaler"] = h.upscaler
    return out


# ---- the upscaling itself -------------------------------------------------------------------------
def upscale_latents(latents: Any, t: Target, upscaler: str) -> Any:
    """Interpolate latents to the target (web UI's latent upscalers), then crop."""
    import torch

    mode, antialias = LATENT_UPSCALERS[upscaler]
    w, h = t.upscale_to
    out = torch.nn.functional.interpolate(
        latents.float(), size=(h // 8, w // 8), mode=mode, antialias=antialias
    ).to(latents.dtype)
    return crop(out, t)


def crop(latents: Any, t: Target) -> Any:
    tx, ty = t.truncate
    return latents[
        :, :, ty // 2 : latents.shape[2] - (ty + 1) // 2, tx // 2 : latents.shape[3] - (tx + 1) // 2
    ]


def upscale_image(image: Any, size: tuple[int, int], upscaler: str) -> Any:
    """web UI's resize_image(0, …, upscaler_name): the upscaler, then Lanczos to the exact size."""
    from PIL import Image

    lanczos = Image.Resampling.LANCZOS
    w, h = size
    if upscaler == "None":
        return image.resize((w, h), resample=lanczos)
    scale = max(w / image.width, h / image.height)
    if scale > 1.0:
        method = Image.Resampling.NEAREST if upscaler == "Nearest" else lanczos
        dest = (int((image.width * scale) // 8 * 8), int((image.height * scale) // 8 * 8))
        for _ in range(3):  # web UI's Upscaler.upscale: repeat until the picture is large enough
            before = image.size
            image = image.resize(
                (int(image.width * scale), int(image.height * scale)), resample=method
            )
            if before == image.size or (image.width >= dest[0] and image.height >= dest[1]):
                break
        if image.size != dest:
            image = image.resize(dest, resample=lanczos)
    if image.size != (w, h):
        image = image.resize((w, h), resample=lanczos)
    return image


def decode(pipe: Any, latents: Any) -> list[Any]:
    """Latents -> RGB pictures, converted to 8 bits as web UI does (truncating, not rounding)."""
    import numpy as np
    import torch
    from PIL import Image

    vae = pipe.vae
    with torch.no_grad(), _vae_precision(vae) as dtype:
        pixels = vae.decode(latents.to(vae.device, dtype) / vae.config.scaling_factor).sample
    pixels = torch.clamp((pixels.float() + 1.0) / 2.0, 0.0, 1.0).cpu().numpy()
    return [Image.fromarray((255.0 * np.moveaxis(x, 0, 2)).astype(np.uint8)) for x in pixels]


def encode(pipe: Any, images: list[Any], generators: list[Any]) -> Any:
    """RGB pictures -> latents (a sample of the VAE's posterior, each from its image's generator)."""
    import numpy as np
    import torch

    vae = pipe.vae
    out = []
    with torch.no_grad(), _vae_precision(vae) as dtype:
        for image, gen in zip(images, generators, strict=True):
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
            x = torch.from_numpy(np.moveaxis(rgb, 2, 0))[None] * 2.0 - 1.0
            dist = vae.encode(x.to(vae.device, dtype)).latent_dist
            out.append(dist.sample(generator=gen) * vae.config.scaling_factor)
    return torch.cat(out)


class _vae_precision:
    """SDXL's VAE overflows in fp16: run it in fp32 there, as diffusers' pipelines do."""

    def __init__(self, vae: Any) -> None:
        import torch

        self.vae, self.dtype = vae, vae.dtype
        self.upcast = self.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)

    def __enter__(self) -> Any:
        import torch

        if self.upcast:
            self.vae.to(torch.float32)
            return torch.float32
        return self.dtype

    def __exit__(self, *exc: object) -> None:
        if self.upcast:
            self.vae.to(self.dtype)
