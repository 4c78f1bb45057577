"""What one web UI "Generate" click asks for (`Settings`), read from the CLI's strings and checked
before any model is loaded, so a typo costs nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator import control as controlnet
from generator import hires as hires_fix
from generator.adapters import check_lora_tags
from generator.errors import GenerationError
from generator.models import Task
from generator.rng import SOURCES
from generator.samplers import Sampler, parse_sampler

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
    check_lora_tags(s.prompt, {path.stem for path, _ in s.loras})  # named as Adapters loads them
    for path, _ in s.embeddings:
        if not path.is_file():
            raise GenerationError(f"--embedding {path}: no such file")
    return sampler


def load_input(label: str, path: Path) -> Any:
    """An --init-image or --mask through guard's one safe loader (text-chunk and pixel limits,
    mode policy, EXIF orientation), its problems as a GenerationError naming the option."""
    from guard.errors import GuardError
    from guard.media import imageio

    try:
        return imageio.load(path)
    except GuardError as exc:
        raise GenerationError(f"{label}: {exc}") from None
