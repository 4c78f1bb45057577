"""txt2img / img2img / inpainting with web UI conventions; every image leaves through guard.publish.

Conventions kept from Stable Diffusion web UI, so its users get what they expect:
- seeds: -1 picks a random seed; image k of a run gets seed + k (batch count x batch size);
- initial noise comes from a CPU torch.Generator per image, so a seed gives the same image
  whatever the batch size, and the same noise on CPU and GPU (web UI's "CPU" RNG source);
- the infotext (PNG Info) is web UI's, including `<lora:name:weight>` tags and short hashes;
- files are `{index:05d}-{seed}-{slug}.png` with the next free index; nothing is overwritten.
"""

from __future__ import annotations

import math
import random
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from generator import control as controlnet
from generator import hires as hires_fix
from generator.adapters import Adapters, prompt_for_encoder, prompt_with_tags
from generator.errors import GenerationError
from generator.models import LoadedModel, Task
from generator.passes import Conditioner, hires_pass
from generator.rng import INFOTEXT as RNG_INFOTEXT
from generator.rng import SOURCES, generator, initial_noise
from generator.samplers import Sampler, make_scheduler, parse_sampler
from guard import __version__
from guard.errors import OutputExistsError
from guard.infotext import Infotext, format_hash_list, format_number
from guard.provenance.spec import Ingredient, ManifestSpec, Training

DEFAULT_SAMPLER = "DPM++ 2M Karras"
MAX_SEED = 2**32 - 1
MAX_SIDE = 4096


@dataclass
class Settings:
    """One web UI "Generate" click: the prompt and every knob next to it."""

    prompt: str
    negative_prompt: str = ""
    sampler: str = DEFAULT_SAMPLER
    schedule_type: str | None = None  # web UI's "Schedule type"; None: the sampler's default
    steps: int = 20
    cfg_scale: float = 7.0
    seed: int = -1
    width: int | None = None  # None: the init image's size, else the model's native size
    height: int | None = None
    batch_count: int = 1
    batch_size: int = 1
    init_image: Path | None = None
    mask: Path | None = None
    strength: float = 0.75  # web UI's "Denoising strength"
    mask_blur: int = 4  # pixels; softens the seam where the inpainted region meets the original
    loras: list[tuple[Path, float]] = field(default_factory=list)
    embeddings: list[tuple[Path, str | None]] = field(default_factory=list)
    refiner_switch: float = 0.8
    rng: str = "cpu"  # web UI's random number source: cpu, gpu or nv (see generator/rng.py)
    clip_skip: int = 1  # web UI's "Clip skip": 1 = the text encoder's last layer
    hires: hires_fix.Hires | None = None  # web UI's "Hires. fix" (txt2img): upscale, then refine
    controls: list[controlnet.Control] = field(default_factory=list)  # ControlNet units

    @property
    def task(self) -> Task:
        if self.mask is not None:
            return "inpaint"
        return "img2img" if self.init_image is not None else "txt2img"


@dataclass
class MadeImage:
    """An image made by one pipeline call, before it is published."""

    image: Any  # PIL.Image.Image
    seed: int
    infotext: Infotext
    task: Task
    index: int  # position within the run (0-based)
    control_images: list[Any] = field(default_factory=list)  # each ControlNet unit's picture


@dataclass
class GeneratedImage:
    path: Path
    seed: int
    infotext: Infotext
    watermark_id: str | None
    manifest_label: str | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "seed": self.seed,
            "watermark_id": self.watermark_id,
            "manifest": self.manifest_label,
            "parameters": self.infotext.to_text(),
            "notes": self.notes,
        }


# ---- argument parsing shared by the CLI and library callers -------------------------------------
def parse_size(text: str) -> tuple[int, int]:
    """'512x768' -> (512, 768); a single number means a square."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX×*]\s*(\d+))?\s*", text)
    if not m:
        raise GenerationError(f"--size '{text}': expected WIDTHxHEIGHT, e.g. 512x512")
    w = int(m.group(1))
    return w, int(m.group(2) or w)


def parse_lora(text: str) -> tuple[Path, float]:
    """'file.safetensors:0.8' -> (file, 0.8); weight 1 when omitted (web UI's default)."""
    path, sep, weight = text.rpartition(":")
    if sep and path and not Path(text).exists():
        try:
            return Path(path).expanduser(), float(weight)
        except ValueError:
            pass
    return Path(text).expanduser(), 1.0


def parse_embedding(text: str) -> tuple[Path, str | None]:
    """'EasyNegative.safetensors:easyneg' -> (file, 'easyneg'); the token defaults to the file
    name without extension, which is what web UI uses."""
    path, sep, token = text.rpartition(":")
    if sep and path and token and not Path(text).exists() and "/" not in token:
        return Path(path).expanduser(), token
    return Path(text).expanduser(), None


def slug(prompt: str, limit: int = 48) -> str:
    """Filesystem-safe words of the prompt: 'A blue bird, flying!' -> 'a-blue-bird-flying'."""
    text = unicodedata.normalize("NFKC", prompt).lower()
    text = re.sub(r"<lora:[^>]*>", " ", text)
    words = [w for w in re.split(r"[^\w]+", text) if w and w != "_"]
    out = ""
    for w in words:
        candidate = f"{out}-{w}" if out else w
        if len(candidate) > limit:
            break
        out = candidate
    return out or (words[0][:limit] if words else "image")


def next_index(folder: Path) -> int:
    """web UI's numbering: one more than the highest `NNNNN-` prefix in the folder."""
    highest = -1
    if folder.is_dir():
        for p in folder.iterdir():
            m = re.match(r"(\d+)-", p.name)
            if m:
                highest = max(highest, int(m.group(1)))
    return highest + 1


def validate(s: Settings) -> Sampler:
    """The checks that need no model: run them before loading one, so a typo costs nothing."""
    sampler = parse_sampler(s.sampler, s.schedule_type)
    if s.rng not in SOURCES:
        raise GenerationError(f"--rng {s.rng}: use one of {', '.join(SOURCES)}")
    if s.rng == "nv" and s.init_image is not None:
        raise GenerationError(
            "--rng nv: web UI's NV noise is reproduced for text-to-image only; img2img and "
            "inpainting draw their noise from a torch generator (use --rng cpu or gpu)"
        )
    if not 1 <= s.clip_skip <= 12:
        raise GenerationError(f"--clip-skip {s.clip_skip}: use 1 (no skip) to 12")
    hires_fix.check_settings(s, MAX_SIDE)
    controlnet.validate(s.controls)
    if s.steps < 1 or s.steps > 1000:
        raise GenerationError(f"--steps {s.steps}: use 1 to 1000")
    if s.batch_count < 1 or s.batch_size < 1:
        raise GenerationError("--batch-count and --batch-size must be at least 1")
    if not 0.0 < s.strength <= 1.0:
        raise GenerationError(f"--strength {s.strength}: use a value in (0, 1]")
    if not 0 <= s.mask_blur <= 64:
        raise GenerationError(f"--mask-blur {s.mask_blur}: use 0 to 64 pixels")
    if not 0.0 < s.refiner_switch < 1.0:
        raise GenerationError(f"--refiner-switch {s.refiner_switch}: use a value in (0, 1)")
    for side in (s.width, s.height):
        if side is not None and (side % 8 or not 8 <= side <= MAX_SIDE):
            raise GenerationError(
                f"--size {s.width}x{s.height}: width and height must be multiples of 8 between "
                f"8 and {MAX_SIDE} (e.g. 512x512, 768x512)"
            )
    if s.init_image is not None and int(s.steps * s.strength) < 1:
        raise GenerationError(
            f"--steps {s.steps} at --strength {s.strength} leaves no denoising step "
            "(img2img runs steps x strength of them); raise --steps or --strength"
        )
    if s.mask is not None and s.init_image is None:
        raise GenerationError("--mask needs --init-image (the picture to paint into)")
    if not -1 <= s.seed <= MAX_SEED:
        raise GenerationError(f"--seed {s.seed}: use -1 (random) or 0 to {MAX_SEED}")
    for label, path in (("--init-image", s.init_image), ("--mask", s.mask)):
        if path is not None and not Path(path).is_file():
            raise GenerationError(f"{label} {path}: no such file")
    if not math.isfinite(s.cfg_scale):
        raise GenerationError(f"--cfg {s.cfg_scale}: use a finite number, e.g. 7")
    for label, path in (("--init-image", s.init_image), ("--mask", s.mask)):
        if path is not None:
            load_input(label, path)  # decoded now, so a broken file costs no model load
    for path, _ in s.loras:
        if not path.is_file():
            raise GenerationError(f"--lora {path}: no such file")
    for path, _ in s.embeddings:
        if not path.is_file():
            raise GenerationError(f"--embedding {path}: no such file")
    return sampler


def load_input(label: str, path: Path) -> Any:
    """An --init-image or --mask through guard's one safe loader (text-chunk and pixel limits,
    mode policy, EXIF orientation), its problems as a GenerationError naming the option."""
    from guard import imageio
    from guard.errors import GuardError

    try:
        return imageio.load(path)
    except GuardError as exc:
        raise GenerationError(f"{label}: {exc}") from None


# ---- the generator --------------------------------------------------------------------------------
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
            pipe.set_progress_bar_config(disable=not self.progress, leave=False)
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
                        p.set_progress_bar_config(desc=desc, disable=not self.progress, leave=False)
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
        self,
        settings: Settings,
        out_dir: str | Path,
        *,
        identity: Any = None,
        training: Training = "notAllowed",
        watermark: bool = True,
        watermark_key: bytes | None = None,
        ledger: Any = None,
        fmt: str = "png",
        on_written: Callable[[GeneratedImage], None] | None = None,
    ) -> list[GeneratedImage]:
        """Generate and publish every image (watermark, C2PA, ledger) into `out_dir`."""
        from guard.publish import publish

        self.check(settings)  # bad settings fail before the folder is created
        folder = Path(out_dir).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GenerationError(
                f"-o {folder}: cannot use it as the output folder ({exc.strerror or exc}); "
                "pass a folder you can write to"
            ) from exc
        index = next_index(folder)
        written: list[GeneratedImage] = []
        # pictures drawn from pose JSON, kept until their manifests are signed
        with tempfile.TemporaryDirectory(prefix="guard-control-") as tmp:
            scratch = Path(tmp)
            for made in self.images(settings):
                spec = build_spec(made, self.model, settings, training, scratch)
                for _attempt in range(1000):
                    path = folder / f"{index:05d}-{made.seed}-{slug(settings.prompt)}.{fmt}"
                    index += 1
                    if path.exists():
                        continue
                    try:
                        result = publish(
                            made.image,
                            path,
                            spec,
                            identity=identity,
                            watermark=watermark,
                            watermark_key=watermark_key,
                            ledger=ledger,
                        )
                        break
                    except OutputExistsError:  # another process took the name meanwhile
                        continue
                else:
                    raise GenerationError(f"{folder}: no free file name found")
                item = GeneratedImage(
                    result.path,
                    made.seed,
                    made.infotext,
                    result.watermark_id,
                    result.manifest_label,
                    list(result.notes),
                )
                written.append(item)
                if on_written is not None:
                    on_written(item)
        return written

    # -- infotext ---------------------------------------------------------------------------------
    def infotext(
        self,
        s: Settings,
        sampler: Sampler,
        seed: int,
        adapters: Adapters | None = None,
        nets: list[controlnet.LoadedControlNet] | None = None,
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


def build_spec(
    made: MadeImage,
    model: LoadedModel,
    settings: Settings,
    training: Training,
    scratch: Path | None = None,
) -> ManifestSpec:
    """What the C2PA manifest says about a generated image (guard.generation_record builds it)."""
    from guard import generation_record

    spec = generation_record.spec(
        made.infotext,
        task=made.task,
        model=model.name,
        model_hash=model.hash,
        training=training,
        extra={"batch_index": made.index, "controlnets": _units(made) or None},
    )
    if settings.init_image is not None:
        spec.ingredients.append(Ingredient(Path(settings.init_image), "parentOf"))
    if settings.mask is not None:
        spec.ingredients.append(Ingredient(Path(settings.mask), "inputTo"))
    for n, (c, picture) in enumerate(zip(settings.controls, made.control_images)):
        title = f"ControlNet {n} control image"
        if not c.is_json:  # the picture the user gave (skeleton, or photo for canny/detection)
            spec.ingredients.append(Ingredient(Path(c.image), "inputTo", title))
        elif scratch is not None:  # a pose JSON: the skeleton drawn from it
            drawn = scratch / f"{made.index}-controlnet-{n}-{Path(c.image).stem}.png"
            if not drawn.exists():
                picture.save(drawn)
            spec.ingredients.append(Ingredient(drawn, "inputTo", f"{title} ({c.image.name})"))
    return spec


def _units(made: MadeImage) -> list[dict[str, Any]]:
    """The ControlNet units of an infotext, structured for the generation assertion."""
    units = []
    for key in sorted(k for k in made.infotext.params if k.startswith("ControlNet ")):
        fields = controlnet.parse_unit(made.infotext.params[key])
        units.append({name.lower().replace(" ", "_"): value for name, value in fields.items()})
    return units
