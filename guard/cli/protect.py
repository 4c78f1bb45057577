"""`guard protect`: adversarial protection for artworks, published with Content Credentials."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from guard import imageio
from guard.cli._common import (
    device_option,
    emit_json,
    force_option,
    handle_errors,
    identity_options,
    json_option,
)
from guard.errors import ImageInputError, OutputExistsError
from guard.protection.params import DEFAULT_STRENGTH, MODES, PRESETS

SUFFIX = ".protected.png"
LOSSY = {".jpg", ".jpeg", ".webp", ".avif"}


def _inputs(arts: tuple[Path, ...]) -> tuple[list[Path], bool]:
    """Files to protect, and whether this is a batch (a folder or several files: resumable)."""
    files: list[Path] = []
    batch = len(arts) > 1
    for art in arts:
        if art.is_dir():
            batch = True
            files += sorted(
                p
                for p in art.iterdir()
                if p.is_file()
                and p.suffix.lower() in imageio.EXTENSIONS
                and not p.name.endswith(SUFFIX)
            )
        elif art.exists():
            files.append(art)
        else:
            raise ImageInputError(f"{art}: no such file or folder")
    if not files:
        raise ImageInputError("no images to protect in " + ", ".join(map(str, arts)))
    return files, batch


def _output(src: Path, out: Path | None, out_dir: Path | None) -> Path:
    if out is not None:
        return out
    return (out_dir or src.parent) / (src.stem + SUFFIX)


def _eps(value: float | None, strength: str) -> float:
    if value is None:
        return PRESETS[strength][0]
    eps = value / 255 if value >= 1 else value
    if not 0 < eps <= 64 / 255:
        raise click.BadParameter("give --eps in 1/255 units (e.g. 8) or as a fraction (0.031)")
    return eps


def _source(path: Path) -> str:
    """Keep the input's IPTC digital source type when its manifest states one."""
    try:
        from guard.provenance import c2pa_io

        loaded = imageio.load(path)
        if c2pa_io.has_manifest(loaded.data, loaded.mime):
            report = c2pa_io.read(loaded.data, loaded.mime, trust_pem=None)
            if report.digital_source_type:
                return report.digital_source_type
    except Exception:  # an unreadable manifest must not stop protection
        pass
    return "digital-art"


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
    "--no-robust", is_flag=True, help="Skip the JPEG/resize robustness (faster, fragile)."
)
@device_option
@identity_options
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
    force: bool,
    as_json: bool,
) -> None:
    """Protect artworks against diffusion mimicry; write signed, watermarked PNGs.

    ART is one or more images or folders. Outputs are <name>.protected.png next to each input
    (or in --out-dir); a folder runs as a batch and skips outputs that already exist, so an
    interrupted batch resumes where it stopped.
    """
    files, batch = _inputs(art)
    if output is not None and len(files) > 1:
        raise click.UsageError("-o/--output takes one input; use --out-dir for several")
    e = _eps(eps, strength)
    n_steps = steps or (PRESETS[strength][1] if eps is None else None)
    results: list[dict[str, Any]] = []
    surrogate = None
    for src in files:
        dst = _output(src, output, out_dir)
        if dst.suffix.lower() in LOSSY:
            click.echo(
                f"guard: warning: {dst.name}: lossy {dst.suffix} weakens the protection; "
                "PNG keeps it intact.",
                err=True,
            )
        if dst.exists() and not force:
            if batch:
                results.append({"input": str(src), "output": str(dst), "skipped": "exists"})
                continue
            raise OutputExistsError(f"{dst} exists; pass --force to overwrite it")
        if surrogate is None:
            surrogate = _load(model, mode, device)
        results.append(
            _one(
                src,
                dst,
                surrogate,
                mode=mode,
                eps=e,
                steps=n_steps,
                robust=not no_robust,
                identity=identity,
                force=force,
                json_mode=as_json,
            )
        )
    if as_json:
        emit_json(results if batch else results[0])
        return
    for r in results:
        if r.get("skipped"):
            click.echo(f"{r['output']}: already protected, skipped")
        else:
            click.echo(
                f"{r['output']}: protected ({r['protection']['mode']}, eps "
                f"{r['protection']['eps_255']}/255, {r['protection']['steps']} steps, "
                f"{r['seconds']:.1f}s), signed" + (", watermarked" if r["watermark_id"] else "")
            )


def _load(model: str | None, mode: str, device: str) -> tuple[Any, str]:
    from guard.protection.models import load_surrogate, pick_device

    return load_surrogate(model, need_unet=mode != "textural", device=pick_device(device))


def _one(
    src: Path,
    dst: Path,
    surrogate: tuple[Any, str],
    *,
    mode: str,
    eps: float,
    steps: int | None,
    robust: bool,
    identity: Any,
    force: bool,
    json_mode: bool,
) -> dict[str, Any]:
    from guard.protection import ASSERTION_LABEL, protect
    from guard.provenance.spec import Assertion, Ingredient, ManifestSpec
    from guard.publish import publish

    loaded = imageio.load(src)
    t0 = time.perf_counter()
    image, record = protect(
        loaded.image,
        mode=mode,
        eps=eps,
        steps=steps,
        robust=robust,
        progress=False if json_mode else src.name,
        return_record=True,
        surrogate=surrogate[0],
        model_name=surrogate[1],
    )
    seconds = time.perf_counter() - t0
    # Protect first, then publish: publish's watermark is added on top of the perturbation
    # (both survive; measured in docs/protect.md) and the signature covers the final pixels.
    spec = ManifestSpec(
        action="edited",
        source=_source(src),
        training="notAllowed",
        ingredients=[Ingredient(src, "parentOf")],
        assertions=[Assertion(ASSERTION_LABEL, record.to_assertion())],
        action_parameters={"protection": record.mode},
    )
    if dst.parent and not dst.parent.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
    # resolved only now, so an input that cannot be protected never creates an identity
    pub = publish(image, dst, spec, identity=identity.resolve(), watermark=True, force=force)
    return {
        "input": str(src),
        "output": str(pub.path),
        "skipped": None,
        "seconds": round(seconds, 2),
        "protection": record.to_assertion(),
        "watermark_id": pub.watermark_id,
        "manifest": pub.manifest_label,
        "sha256": pub.sha256,
        "notes": pub.notes,
    }
