"""`guard info`: web UI's "PNG Info" — the generation parameters stored in an image."""

from __future__ import annotations

from pathlib import Path

import click

from guard.cli._common import emit_json, handle_errors, json_option


@click.command("info")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_option
@handle_errors
def command(images: tuple[Path, ...], as_json: bool) -> None:
    """Print the generation parameters of IMAGES (made by guard, Stable Diffusion web UI or
    ComfyUI). --json prints a list, one object per image.

    Exit status 1 when an image holds no parameters.
    """
    from guard.cli._common import PerFile
    from guard.provenance.generator_tags import read_parameters

    reports, missing = [], 0
    batch = PerFile(len(images))
    for path in images:
        with batch.file() as outcome:
            info, where = read_parameters(path)
        if outcome.error is not None:
            continue
        if info is None:
            missing += 1
            if as_json:
                reports.append({"file": str(path), "found": False})
            else:
                click.echo(f"{path}: no generation parameters found", err=True)
            continue
        if as_json:
            reports.append({"file": str(path), "found": True, "source": where, **info.to_dict()})
        else:
            if len(images) > 1:
                click.echo(f"== {path} ({where})")
            click.echo(info.to_text())
    if as_json:
        emit_json(reports)  # a list for one image too, as every command's --json
    batch.finish(1 if missing else 0)
