"""`guard generate`: Stable Diffusion with web UI's options; every image is watermarked and signed."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from guard.cli._common import (
    device_option,
    emit_json,
    handle_errors,
    identity_options,
    json_option,
    ledger_option,
    read_key,
    training_option,
    watermark_key_option,
)

_path = click.Path(path_type=Path)


@click.command("generate")
@click.argument("prompt")
@click.option("-n", "--negative", default="", help="Negative prompt.")
@click.option(
    "-m",
    "--model",
    envvar="GUARD_MODEL",
    show_envvar=True,
    help="Hub id, diffusers folder or .safetensors/.ckpt file "
    "[default: stable-diffusion-v1-5/stable-diffusion-v1-5].",
)
@click.option(
    "--config",
    "model_config",
    help="For a single-file --model offline: a diffusers folder of the same architecture "
    "(or the original .yaml).",
)
@click.option(
    "--sampler",
    default="DPM++ 2M Karras",
    show_default=True,
    help="Sampler as web UI names it, e.g. 'Euler a', 'DPM++ 2M', 'UniPC' (or 'DPM++ 2M Karras').",
)
@click.option(
    "--schedule-type",
    help="web UI's Schedule type: Automatic, Uniform, Karras, Exponential, Polyexponential, "
    "SGM Uniform, KL Optimal, Align Your Steps, Simple, Normal, DDIM, Beta "
    "[default: the sampler's own].",
)
@click.option("--steps", type=int, default=20, show_default=True, help="Sampling steps.")
@click.option("--cfg", "cfg_scale", type=float, default=7.0, show_default=True, help="CFG scale.")
@click.option(
    "--seed", type=int, default=-1, show_default=True, help="-1 picks one; image k gets seed+k."
)
@click.option("--size", help="WIDTHxHEIGHT, multiples of 8 [default: the model's native size].")
@click.option("--batch-count", type=int, default=1, show_default=True, help="Batches to run.")
@click.option("--batch-size", type=int, default=1, show_default=True, help="Images per batch.")
@click.option("--init-image", type=_path, help="Source image: runs img2img.")
@click.option("--strength", type=float, default=0.75, show_default=True, help="Denoising strength.")
@click.option("--mask", type=_path, help="Inpainting mask for --init-image (white = repaint).")
@click.option(
    "--mask-blur", type=int, default=4, show_default=True, help="Mask edge blur in pixels."
)
@click.option("--vae", help="VAE: hub id, diffusers folder or .safetensors/.ckpt/.pt file.")
@click.option(
    "--lora", "loras", multiple=True, metavar="FILE[:WEIGHT]", help="LoRA file (repeatable)."
)
@click.option(
    "--embedding",
    "embeddings",
    multiple=True,
    metavar="FILE[:TOKEN]",
    help="Textual-inversion embedding; the token defaults to the file name (repeatable).",
)
@click.option(
    "--control",
    "controls",
    multiple=True,
    metavar="KIND:IMAGE[:W[:START:END]]",
    help="ControlNet unit: openpose:SKELETON.png or canny:PHOTO.png, optional weight and "
    "guidance start/end (repeatable).",
)
@click.option(
    "--pose",
    "poses",
    multiple=True,
    metavar="FILE[:W[:START:END]]",
    help="OpenPose unit from a pose JSON (openpose-editor, ControlNet extension) or a photo "
    "(pose detection needs controlnet_aux weights) (repeatable).",
)
@click.option(
    "--control-model",
    "control_models",
    multiple=True,
    metavar="REF",
    help="ControlNet for each unit in turn (--control units first, then --pose): hub id, folder "
    "or .safetensors/.pth file [default: lllyasviel's v1.1 SD 1.5 / a standard SDXL one].",
)
@click.option("--refiner", help="SDXL refiner model (hub id, folder or file).")
@click.option(
    "--refiner-switch",
    type=float,
    default=0.8,
    show_default=True,
    help="Fraction of the steps after which the refiner takes over.",
)
@click.option(
    "--rng",
    type=click.Choice(["cpu", "gpu", "nv"]),
    default="cpu",
    show_default=True,
    help="Noise source, as web UI's RNG setting; nv gives web UI's NVidia noise on any device.",
)
@click.option(
    "--clip-skip", type=int, default=1, show_default=True, help="web UI's Clip skip (SD 1.x)."
)
@click.option(
    "--hires-scale",
    type=float,
    help="Hires fix: upscale the image by this factor and refine it in a second pass.",
)
@click.option(
    "--hires-size", metavar="WxH", help="Hires fix to this size instead (0 keeps the aspect ratio)."
)
@click.option("--hires-steps", type=int, help="Hires fix steps [default: 0, as many as --steps].")
@click.option(
    "--hires-upscaler",
    help="Latent (default), 'Latent (antialiased)', 'Latent (bicubic)', 'Latent (bicubic "
    "antialiased)', 'Latent (nearest)', 'Latent (nearest-exact)', Lanczos, Nearest or None.",
)
@click.option("--hires-denoise", type=float, help="Hires fix denoising strength [default: 0.7].")
@device_option
@click.option(
    "--low-memory/--no-low-memory",
    default=None,
    help="Attention slicing + VAE tiling [default: on when memory is short].",
)
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("outputs"),
    show_default=True,
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["png", "jpg", "webp"]),
    default="png",
    show_default=True,
    help="Image format; the parameters go in a PNG text chunk or EXIF UserComment.",
)
@training_option
@click.option("--no-watermark", is_flag=True, help="Do not embed guard's invisible watermark.")
@ledger_option
@identity_options
@watermark_key_option()
@json_option
@handle_errors
def command(
    prompt: str,
    negative: str,
    model: str | None,
    model_config: str | None,
    sampler: str,
    schedule_type: str | None,
    steps: int,
    cfg_scale: float,
    seed: int,
    size: str | None,
    batch_count: int,
    batch_size: int,
    init_image: Path | None,
    strength: float,
    mask: Path | None,
    mask_blur: int,
    vae: str | None,
    loras: tuple[str, ...],
    embeddings: tuple[str, ...],
    controls: tuple[str, ...],
    poses: tuple[str, ...],
    control_models: tuple[str, ...],
    refiner: str | None,
    refiner_switch: float,
    rng: str,
    clip_skip: int,
    hires_scale: float | None,
    hires_size: str | None,
    hires_steps: int | None,
    hires_upscaler: str | None,
    hires_denoise: float | None,
    device: str,
    low_memory: bool | None,
    out_dir: Path,
    fmt: str,
    training: str,
    no_watermark: bool,
    ledger_path: Path | None,
    identity: object,
    key_file: Path | None,
    as_json: bool,
) -> None:
    """Generate images from PROMPT; each one is watermarked, C2PA-signed and recorded.

    \b
    guard generate "a blue bird, flying over a field of flowers" \\
        --negative lowres --sampler "DPM++ 2M Karras" --steps 20 --cfg 7 \\
        --seed 1478966807 --size 512x512 -o out/
    """
    from generator.control import parse_control, parse_pose
    from generator.errors import GenerationError
    from generator.generate import Generator
    from generator.hires import from_options
    from generator.models import DEFAULT_MODEL, load_model
    from generator.publishing import PublishOptions
    from generator.settings import Settings, parse_embedding, parse_lora, parse_size, validate
    from guard.ledger import Ledger

    width = height = None
    if size:
        width, height = parse_size(size)
    units = [parse_control(x) for x in controls] + [parse_pose(x) for x in poses]
    if len(control_models) > len(units):
        raise GenerationError(
            f"--control-model given {len(control_models)} times for {len(units)} ControlNet "
            "unit(s); give one per --control/--pose, in order (--control units first)"
        )
    for unit, ref in zip(units, control_models):
        unit.model = ref
    settings = Settings(
        prompt=prompt,
        negative_prompt=negative,
        sampler=sampler,
        schedule_type=schedule_type,
        steps=steps,
        cfg_scale=cfg_scale,
        seed=seed,
        width=width,
        height=height,
        batch_count=batch_count,
        batch_size=batch_size,
        init_image=init_image,
        mask=mask,
        strength=strength,
        mask_blur=mask_blur,
        loras=[parse_lora(x) for x in loras],
        embeddings=[parse_embedding(x) for x in embeddings],
        refiner_switch=refiner_switch,
        rng=rng,
        clip_skip=clip_skip,
        controls=units,
        hires=from_options(hires_scale, hires_size, hires_steps, hires_upscaler, hires_denoise),
    )
    chosen = validate(settings)  # cheap checks first: a typo must not cost a model load
    warning = chosen.choice.webui_warning()
    if warning:
        click.echo(f"guard: warning: {warning}", err=True)
    signer = identity.resolve()  # type: ignore[attr-defined]
    base = load_model(
        model or DEFAULT_MODEL,
        config=model_config,
        vae=vae,
        device=device,
        low_memory=low_memory,
    )
    refined = None
    if refiner:
        refined = load_model(
            refiner, device=device, low_memory=low_memory, share_from=base, what="refiner"
        )
    generator = Generator(base, refined)

    def written(item) -> None:
        for note in item.notes:
            click.echo(f"guard: {item.path}: {note}", err=True)
        if not as_json:
            mark = f", watermark {item.watermark_id}" if item.watermark_id else ""
            click.echo(f"{item.path}  (seed {item.seed}{mark})")

    created = _first_missing(out_dir)
    with Ledger(ledger_path) as ledger, _removed_if_left_empty(created):
        options = PublishOptions(
            identity=signer,
            training=training,  # type: ignore[arg-type]
            watermark=not no_watermark,
            watermark_key=read_key(key_file),
            ledger=ledger,
            fmt=fmt,
            on_written=written,
        )
        results = generator.generate(settings, out_dir, options)
    if as_json:
        emit_json([r.to_dict() for r in results])


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of `folder` that does not exist yet (this run will create it)."""
    missing = None
    for p in [folder.expanduser(), *folder.expanduser().parents]:
        if p.exists():
            break
        missing = p
    return missing


@contextlib.contextmanager
def _removed_if_left_empty(created: Path | None):
    """A run that fails leaves no empty folder it created behind (folders it found stay)."""
    try:
        yield
    except BaseException:
        if created is not None and created.is_dir():
            for p in sorted(created.rglob("*"), reverse=True):
                if p.is_dir():
                    with contextlib.suppress(OSError):
                        p.rmdir()
            with contextlib.suppress(OSError):
                created.rmdir()
        raise
