"""`guard protect`: adversarial protection for artworks, published with Content Credentials.

A thin layer over `guard.protection.workflow` (`protect_files` / `protect_file`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from guard.cli._common import (
    device_option,
    emit_json,
    force_option,
    handle_errors,
    identity_options,
    json_option,
    watermark_key_option,
)
from guard.errors import ImageInputError, OutputExistsError
from guard.protection.params import DEFAULT_STRENGTH, MODES, PRESETS


def _eps(value: float | None) -> float | None:
    """--eps in 1/255 units (8) or as a fraction (0.031)."""
    if value is None:
        return None
    eps = value / 255 if value >= 1 else value
    if not 0 < eps <= 64 / 255:
        raise click.BadParameter("give --eps in 1/255 units (e.g. 8) or as a fraction (0.031)")
    return eps


@click.command("protect")
@click.argument("art", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Output file (one input only)."
)
@click.option("--out-dir", type=click.Path(path_type=Path), help="Folder for the outputs.")
@click.option(
    "--strength",
    type=click.Choice(list(PRESETS)),
    default=DEFAULT_STRENGTH,
    show_default=True,
    help="Preset for --eps and --steps (see docs/protect.md).",
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="textural",
    show_default=True,
    help="textural: disrupt the autoencoder; semantic: the denoiser; fused: both.",
)
@click.option(
    "--model",
    help="Hub id, diffusers folder or .safetensors/.ckpt to protect against "
    "[default: stable-diffusion-v1-5/stable-diffusion-v1-5].",
)
@click.option(
    "--steps", type=click.IntRange(1, 1000), help="Optimisation steps (overrides the preset)."
)
@click.option(
    "--eps", type=float, help="Max change per pixel, in 1/255 units (overrides the preset)."
)
@click.option(
    "--no-robust", is_flag=True, help="Optimise without the purifiers (JPEG, resize, noise)."
)
@device_option
@identity_options
@watermark_key_option()
@force_option
@json_option
@handle_errors
def command(
    art: tuple[Path, ...],
    output: Path | None,
    out_dir: Path | None,
    strength: str,
    mode: str,
    model: str | None,
    steps: int | None,
    eps: float | None,
    no_robust: bool,
    device: str,
    identity: Any,
    key_file: Path | None,
    force: bool,
    as_json: bool,
) -> None:
    """Protect artworks against diffusion mimicry; write signed, watermarked PNGs.

    ART is one or more images or folders. Outputs are <name>.protected.png next to each input
    (or in --out-dir); a folder runs as a batch and skips outputs that already exist, so an
    interrupted batch resumes where it stopped.
    """
    from guard.cli._common import PerFile, check_collisions, read_key
    from guard.protection.workflow import (
        Failed,
        artworks,
        lossy_warning,
        output_for,
        protect_files,
    )

    files = artworks(art)
    if not files:
        raise ImageInputError("no images to protect in " + ", ".join(map(str, art)))
    batch = len(art) > 1 or any(a.is_dir() for a in art)
    if output is not None and len(files) > 1:
        raise click.UsageError("-o/--output takes one input; use --out-dir for several")
    jobs = [(src, output or output_for(src, out_dir)) for src in files]
    # before any work: two artworks never share an output, --force never replaces an input
    check_collisions([(src, [dst]) for src, dst in jobs])
    for _, dst in jobs:
        warning = lossy_warning(dst)
        if warning:
            click.echo(f"guard: warning: {warning}", err=True)
    if not batch and jobs[0][1].exists() and not force:
        raise OutputExistsError(f"{jobs[0][1]} exists; pass --force to overwrite it")
    watermark_key = read_key(key_file)
    results, per_file = [], PerFile(len(jobs))
    # one batch: the model is loaded once (a model that cannot load stops it), one progress bar
    # runs across all files, and a file that fails is one error line while the others go on
    for r in protect_files(
        jobs,
        resume=batch,
        force=force,
        model=model,
        mode=mode,  # type: ignore[arg-type]
        device=device,
        strength=strength,
        eps=_eps(eps),
        steps=steps,
        robust=not no_robust,
        identity=identity.resolve,  # resolved only once an input has been protected
        watermark_key=watermark_key,
        progress=not as_json,
        keep_going=True,
    ):
        if isinstance(r, Failed):
            with per_file.file():  # a single input raises; a batch prints the error and goes on
                raise r.error
            continue
        results.append(r.to_dict())
        if not as_json:
            click.echo(_line(results[-1]))
    if as_json:  # a list, one input or many, as every command's --json
        emit_json(results)
    per_file.finish()


def _line(r: dict[str, Any]) -> str:
    if r.get("skipped"):
        return f"{r['output']}: already protected, skipped"
    return (
        f"{r['output']}: protected ({r['protection']['mode']}, eps "
        f"{r['protection']['eps_255']}/255, {r['protection']['steps']} steps, "
        f"{r['seconds']:.1f}s), signed" + (", watermarked" if r["watermark_id"] else "")
    )
