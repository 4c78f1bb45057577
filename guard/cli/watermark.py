"""`guard watermark embed|detect`: the invisible watermark on its own, without signing."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from guard.cli._common import (
    emit_json,
    force_option,
    handle_errors,
    json_option,
    watermark_key_option,
)

_key_option = watermark_key_option(old_spelling=True)


@click.group("watermark")
def command() -> None:
    """Embed or detect guard's invisible 64-bit watermark directly.

    `guard sign` already watermarks by default and records the ID in the ledger; use these
    commands to mark pixels without signing, or to look for a mark on its own.
    """


@command.command("embed")
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Output file.")
@click.option("--payload", help="The ID as 16 hex digits (8 bytes); a random one when omitted.")
@_key_option
@click.option(
    "--strength",
    type=click.FloatRange(0.25, 4.0),
    help="Multiplier on the default strength (1.0); higher survives more, shows more.",
)
@force_option
@json_option
@handle_errors
def embed_command(
    input_path: Path,
    output: Path,
    payload: str | None,
    key_file: Path | None,
    strength: float | None,
    force: bool,
    as_json: bool,
) -> None:
    """Write a watermarked copy of IN to OUTPUT (format from its extension)."""
    from guard import watermark as wm
    from guard.cli._common import check_collisions, read_key
    from guard.media import carried, imageio, reencoding
    from guard.media.atomic_write import save_atomic
    from guard.media.formats import format_for

    data = _parse_payload(payload) if payload else wm.new_payload()
    key = read_key(key_file)
    fmt = format_for(output)
    check_collisions([(input_path, [output])])  # --force never replaces the input
    loaded = imageio.load(input_path)
    marked = wm.embed(loaded.image, data, key=key, strength=strength)
    encoded, notes = reencoding.reencode(marked, fmt, loaded, packet=carried.xmp_packet(loaded))
    for note in notes:
        click.echo(f"guard: {input_path}: {note}", err=True)
    save_atomic(output, encoded, force=force)
    result = {
        "input": str(input_path),
        "output": str(output),
        "id": data.hex(),
        "algorithm": wm.ALGORITHM,
        "key": "private" if key else "public",
    }
    if as_json:
        emit_json(result)
    else:
        click.echo(f"{output}: watermarked, ID {data.hex()} ({result['key']} key)")


@command.command("detect")
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@_key_option
@json_option
@handle_errors
def detect_command(input_path: Path, key_file: Path | None, as_json: bool) -> None:
    """Look for guard's watermark (and known third-party marks) in IN.

    Exit code: 0 found, 1 not found (or too small to carry one), 2 usage or input error.
    """
    from guard import watermark as wm
    from guard.cli._common import read_key
    from guard.media import imageio

    key = read_key(key_file)
    loaded = imageio.load(input_path)
    hit = wm.detect(loaded.image, key=key)
    marks = wm.detect_third_party(loaded.image)
    if as_json:
        emit_json(
            {
                "file": str(input_path),
                **hit.to_dict(),
                "third_party_marks": [m.to_dict() for m in marks],
            }
        )
    else:
        click.echo(f"{input_path}: {_describe(hit)}")
        for m in marks:
            click.echo(
                f"  third-party mark: {m.name} ({m.message}; bit agreement {m.bit_agreement:.2f}, "
                f"p = {m.p_value:.1e}; a fragile mark)"
            )
    sys.exit(0 if hit.found else 1)


def _describe(hit) -> str:
    if hit.status == "too_small":
        return f"not checked: {hit.reason}"
    if not hit.found:
        return "no guard watermark found"
    geo = hit.geometry
    shape = ""
    if geo and (abs(geo["scale"] - 1) > 0.02 or abs(geo["rotation_degrees"]) > 0.5):
        shape = f"; looks scaled ×{geo['scale']:.2f} and rotated {geo['rotation_degrees']:.1f}°"
    p = "p < 1e-300" if hit.p_value <= 1e-300 else f"p = {hit.p_value:.1e}"
    return f"watermark found ({p}), ID {hit.id} (code chip agreement {hit.bit_accuracy:.2f}{shape})"


def _parse_payload(text: str) -> bytes:
    cleaned = text.strip().lower().removeprefix("0x")
    try:
        data = bytes.fromhex(cleaned)
    except ValueError:
        data = b""
    if len(data) != 8:
        raise click.BadParameter(
            f"'{text}' is not 16 hex digits (8 bytes), e.g. 9f3a0c1e5b7d2468",
            param_hint="--payload",
        )
    return data
