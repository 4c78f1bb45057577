"""txt2img / img2img / inpainting with web UI conventions; every image leaves through guard.publish.

Conventions kept from Stable Diffusion web UI, so its users get what they expect:
- seeds: -1 picks a random seed; image k of a run gets seed + k (batch count x batch size);
- initial noise comes from a CPU torch.Generator per image, so a seed gives the same image
  whatever the batch size, and the same noise on CPU and GPU (web UI's "CPU" RNG source);
- the infotext (PNG Info) is web UI's, including `<lora:name:weight>` tags and short hashes;
- files are named and published as web UI names them (generator.publishing); what a run asks for
  is generator.settings.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from generator import control as controlnet
from generator import hires as hires_fix
from generator.adapters import Adapters, prompt_for_encoder, prompt_with_tags
from generator.control import LoadedControlNet  # by name: in the class, `controlnet` is a method
from generator.errors import GenerationError
from generator.models import LoadedModel, Task
from generator.passes import Conditioner, hires_pass
from generator.publishing import GeneratedImage, PublishOptions, publish_all
from generator.rng import INFOTEXT as RNG_INFOTEXT
from generator.rng import generator, initial_noise
from generator.samplers import Sampler, make_scheduler
from generator.settings import MAX_SEED, MAX_SIDE, Settings, load_input, validate
from guard import __version__
from guard.progress import disable as bar_disable
from guard.webui.infotext import Infotext, format_hash_list, format_number


@dataclass
class MadeImage:
    """An image made by one pipeline call, before it is published."""

    image: Any  # PIL.Image.Image
    seed: int
    infotext: Infotext
    task: Task
    index: int  # position within the run (0-based)
    control_images: list[Any] = field(default_factory=list)  # each ControlNet unit's picture


class Generator:
    """A loaded model (and optional SDXL refiner) that turns Settings into published images."""

    def __init__(
        self, model: LoadedModel, refiner: LoadedModel | None = None, progress: bool = True
    ) -> None:
        if refiner is not None and model.family != "sdxl":
            raise GenerationError(
                f"--refiner: the refiner hands over SDXL latents, but '{model.name}' is not an "
                "SDXL model; use an SDXL base model or drop --refiner"
            )
        self.model = model
        self.refiner = refiner
        self.progress = progress
        # schedulers are always rebuilt from the model's own config, never from the last choice
        self._scheduler_config = dict(model.pipe.scheduler.config)
        self._refiner_scheduler_config = dict(refiner.pipe.scheduler.config) if refiner else None
        self._controlnets: dict[str, controlnet.LoadedControlNet] = {}

    def controlnet(self, c: controlnet.Control) -> controlnet.LoadedControlNet:
        """The unit's ControlNet model, loaded once per reference."""
        ref = c.model or controlnet.DEFAULT_MODELS[(self.model.family, c.kind)]
        if ref not in self._controlnets:
            self._controlnets[ref] = controlnet.load_controlnet(ref, self.model)
        return self._controlnets[ref]

    # -- validation -------------------------------------------------------------------------------
    def check(self, s: Settings) -> tuple[Sampler, Settings]:
        """Fail before any model work; return the sampler and the settings with sizes filled in."""
        sampler = validate(s)
        width, height = s.width, s.height
        if (width is None) != (height is None):
            raise GenerationError("give both width and height (--size WxH)")
        if width is None and s.init_image is not None:
            # the upright size (EXIF orientation applied), as _inputs will resize the picture
            w, h = load_input("--init-image", s.init_image).image.size
            width, height = w // 8 * 8, h // 8 * 8
        if width is None:
            width = height = self.model.native_size
        assert width is not None and height is not None
        if width % 8 or height % 8 or not (8 <= width <= MAX_SIDE and 8 <= height <= MAX_SIDE):
            raise GenerationError(
                f"--size {width}x{height}: width and height must be multiples of 8 between 8 "
                f"and {MAX_SIDE} (e.g. 512x512, 768x512)"
            )
        if s.hires is not None:
            hires_fix.check(s.hires, width, height, MAX_SIDE)
            if self.refiner is not None:
                raise GenerationError(
                    "--refiner with the hires fix is not supported; drop one of them"
                )
        return sampler, replace(s, width=width, height=height)

    # -- generation -------------------------------------------------------------------------------
    def images(self, settings: Settings) -> Iterator[MadeImage]:
        """Run the pipeline and yield images with their infotext; nothing is written."""
        sampler, s = self.check(settings)
        task = s.task
        nets = [self.controlnet(c) for c in s.controls]
        if nets:
            pipe = self.model.control_pipeline(task, [n.model for n in nets])
            pipe.set_progress_bar_config(disable=bar_disable(self.progress), leave=False)
        else:
            pipe = self.model.pipeline(task)
        sdxl = self.model.family == "sdxl"
        pipe.scheduler = make_scheduler(sampler, self._scheduler_config, sdxl=sdxl)
        refiner_pipe = None
        if self.refiner is not None:
            assert self._refiner_scheduler_config is not None
            refiner_pipe = self.refiner.pipeline("inpaint" if task == "inpaint" else "img2img")
            refiner_pipe.scheduler = make_scheduler(
                sampler, self._refiner_scheduler_config, sdxl=sdxl
            )

        init, mask = self._inputs(s)
        assert s.width is not None and s.height is not None
        control_images = [controlnet.control_image(c, s.width, s.height) for c in s.controls]
        seed = random.randrange(MAX_SEED) if s.seed == -1 else s.seed
        adapters = Adapters(self.model, s.prompt, s.loras, s.embeddings)
        with adapters:
            prompt = prompt_for_encoder(s.prompt, adapters.lora_names)
            # web UI's prompt syntax, long prompts and prompt editing (generator/passes.py)
            conditioner = Conditioner(sampler.base, prompt, s.negative_prompt, s.steps, s.clip_skip)
            for b in range(s.batch_count):
                seeds = [seed + b * s.batch_size + i for i in range(s.batch_size)]
                device = self.model.device
                generators = [generator(x, s.rng, device) for x in seeds]  # type: ignore[arg-type]
                if sampler.brownian:  # one Brownian tree per image, seeded like its latents
                    for p in (pipe, refiner_pipe):
                        if p is not None:
                            p.scheduler.noise_sampler_seed = seeds
                desc = f"batch {b + 1}/{s.batch_count}" if s.batch_count > 1 else "sampling"
                for p in (pipe, refiner_pipe):
                    if p is not None:
                        p.set_progress_bar_config(
                            desc=desc, disable=bar_disable(self.progress), leave=False
                        )
                args: dict[str, Any] = {
                    "num_inference_steps": s.steps,
                    "guidance_scale": conditioner.guidance(s.cfg_scale),
                    "generator": generators,
                }
                if task == "txt2img":
                    args.update(width=s.width, height=s.height)
                    args["latents"] = self._latents(s, seeds, generators)
                else:
                    args.update(image=[init] * s.batch_size, strength=s.strength)
                if task == "inpaint":
                    args.update(mask_image=[mask] * s.batch_size, width=s.width, height=s.height)
                if nets:
                    args.update(self._control_args(s, control_images, task))
                if refiner_pipe is not None:
                    args.update(denoising_end=s.refiner_switch, output_type="latent")
                    latents = conditioner.run(pipe, args, s.batch_size).images
                    rargs = {
                        k: v for k, v in args.items() if k not in ("width", "height", "strength")
                    }
                    rargs.update(image=latents, denoising_start=s.refiner_switch, output_type="pil")
                    rargs.pop("denoising_end")
                    # web UI's step count carries on from the base model's steps
                    offset = getattr(pipe, "num_timesteps", 0)
                    out = conditioner.run(refiner_pipe, rargs, s.batch_size, offset=offset)
                    out = out.images
                elif s.hires is not None:
                    args["output_type"] = "latent"
                    latents = conditioner.run(pipe, args, s.batch_size).images
                    out = self._hires(s, sampler, pipe, conditioner, latents, seeds)
                else:
                    args["output_type"] = "pil"
                    out = conditioner.run(pipe, args, s.batch_size).images
                for i, (image, image_seed) in enumerate(zip(out, seeds, strict=True)):
                    if task == "inpaint":
                        # outside the mask the original pixels come back unchanged, as in web UI
                        from PIL import Image as PILImage

                        image = PILImage.composite(image.convert("RGB"), init, mask)
                    info = self.infotext(s, sampler, image_seed, adapters, nets)
                    index = b * s.batch_size + i
                    yield MadeImage(image, image_seed, info, task, index, control_images)

    def generate(
        self, settings: Settings, out_dir: str | Path, options: PublishOptions | None = None
    ) -> list[GeneratedImage]:
        """Generate and publish every image (watermark, C2PA, ledger) into `out_dir`."""
        self.check(settings)  # bad settings fail before the folder is created
        return publish_all(self.images(settings), settings, self.model, out_dir, options)

    # -- infotext ---------------------------------------------------------------------------------
    def infotext(
        self,
        s: Settings,
        sampler: Sampler,
        seed: int,
        adapters: Adapters | None = None,
        nets: list[LoadedControlNet] | None = None,
    ) -> Infotext:
        m = self.model
        params: dict[str, str] = {
            "Steps": str(s.steps),
            **sampler.infotext_fields(),
            "CFG scale": format_number(float(s.cfg_scale)),
            "Seed": str(seed),
            "Size": f"{s.width}x{s.height}",
        }
        if m.hash:
            params["Model hash"] = m.hash
        params["Model"] = m.name
        if m.vae_name:
            if m.vae_hash:
                params["VAE hash"] = m.vae_hash
            params["VAE"] = m.vae_name
        if s.task != "txt2img" or s.hires is not None:
            strength = s.hires.denoise if s.hires is not None else s.strength
            params["Denoising strength"] = format_number(float(strength))
        if s.clip_skip > 1:
            params["Clip skip"] = str(s.clip_skip)
        if s.rng != "gpu":  # web UI writes the source unless it is its default, GPU
            params["RNG"] = RNG_INFOTEXT[s.rng]
        if s.hires is not None:
            params.update(hires_fix.infotext_fields(s.hires))
        if s.task == "inpaint":
            params["Mask blur"] = str(s.mask_blur)
        if self.refiner is not None:
            r = self.refiner
            params["Refiner"] = f"{r.name} [{r.hash}]" if r.hash else r.name
            params["Refiner switch at"] = format_number(float(s.refiner_switch))
        for n, (c, net) in enumerate(zip(s.controls, nets or [])):
            params[f"ControlNet {n}"] = controlnet.unit_text(c, net.name, net.hash)
        if adapters is not None and adapters.lora_hashes:
            params["Lora hashes"] = format_hash_list(adapters.lora_hashes)
        if adapters is not None and adapters.ti_hashes:
            params["TI hashes"] = format_hash_list(adapters.ti_hashes)
        params["Version"] = f"guard v{__version__}"
        prompt = s.prompt
        if adapters is not None:
            prompt = prompt_with_tags(s.prompt, adapters.lora_tags)
        return Infotext(prompt, s.negative_prompt, params)

    # -- hires fix --------------------------------------------------------------------------------
    def _hires(
        self,
        s: Settings,
        sampler: Sampler,
        pipe: Any,
        conditioner: Conditioner,
        latents: Any,
        seeds: list[int],
    ) -> list[Any]:
        """web UI's hires fix: a second, img2img pass over the upscaled first pass."""
        second = self.model.pipeline("img2img")
        sdxl = self.model.family == "sdxl"
        second.scheduler = make_scheduler(sampler, self._scheduler_config, sdxl=sdxl)
        if sampler.brownian:
            second.scheduler.noise_sampler_seed = seeds
        device = self.model.device

        def fresh() -> list[Any]:  # web UI draws the pass's noise from a re-seeded generator
            return [generator(x, s.rng, device) for x in seeds]  # type: ignore[arg-type]

        return hires_pass(pipe, second, conditioner, latents, s, fresh, self.progress)

    # -- inputs -----------------------------------------------------------------------------------
    @staticmethod
    def _control_args(s: Settings, pictures: list[Any], task: Task) -> dict[str, Any]:
        """ControlNet arguments: one picture, weight and guidance window per unit."""
        one = len(pictures) == 1
        images = pictures[0] if one else pictures
        return {
            # text-to-image pipelines take the control picture as `image`
            ("image" if task == "txt2img" else "control_image"): images,
            "controlnet_conditioning_scale": (
                s.controls[0].weight if one else [c.weight for c in s.controls]
            ),
            "control_guidance_start": s.controls[0].start if one else [c.start for c in s.controls],
            "control_guidance_end": s.controls[0].end if one else [c.end for c in s.controls],
        }

    def _latents(self, s: Settings, seeds: list[int], generators: list[Any]) -> Any:
        """Each image's starting noise from its own seed, drawn in float32 as web UI draws it.

        cpu/gpu draw from the image's generator, which per-step noise then continues from
        (web UI's ImageRNG); nv is web UI's Philox (generator/rng.py).
        """
        pipe = self.model.pipe
        channels = int(pipe.unet.config.in_channels)
        if channels == 9:  # an inpainting UNet takes 4 noise channels + mask + masked image
            channels = 4
        shape = (channels, s.height // pipe.vae_scale_factor, s.width // pipe.vae_scale_factor)
        noise = initial_noise(shape, s.rng, seeds, generators)  # type: ignore[arg-type]
        return noise.to(device=self.model.device, dtype=pipe.unet.dtype)

    def _inputs(self, s: Settings) -> tuple[Any, Any]:
        """Init image and mask, resized to the output size ("Just resize" in web UI)."""
        if s.init_image is None:
            return None, None
        from PIL import Image as PILImage

        size = (s.width, s.height)
        init = load_input("--init-image", s.init_image).image.convert("RGB")
        if init.size != size:
            init = init.resize(size, PILImage.Resampling.LANCZOS)
        mask = None
        if s.mask is not None:
            loaded = load_input("--mask", s.mask).image
            # white = repaint (web UI and diffusers agree); transparency counts as "keep"
            if loaded.mode in ("RGBA", "LA"):
                bg = PILImage.new("RGBA", loaded.size, (0, 0, 0, 255))
                loaded = PILImage.alpha_composite(bg, loaded.convert("RGBA"))
            mask = loaded.convert("L")
            if mask.size != size:
                mask = mask.resize(size, PILImage.Resampling.NEAREST)
            if s.mask_blur:
                from PIL import ImageFilter

                mask = mask.filter(ImageFilter.GaussianBlur(s.mask_blur))
        return init, mask
