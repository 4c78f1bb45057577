"""`guard sign`: watermark + C2PA-sign existing images."""

from __future__ import annotations

from pathlib import Path

import click

from guard.cli._common import (
    emit_json,
    force_option,
    handle_errors,
    identity_options,
    json_option,
    ledger_option,
    training_option,
    watermark_key_option,
)
from guard.provenance.vocab import SOURCE_TYPES


@click.command("sign")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Output file (one input only)."
)
@click.option(
    "--out-dir", type=click.Path(path_type=Path, file_okay=False), help="Write outputs here."
)
@click.option(
    "--source",
    default="digital-art",
    show_default=True,
    help=f"How the image was made: {', '.join(SOURCE_TYPES)}, or an IPTC URI.",
)
@click.option("--author", help="Author name, recorded as a schema.org CreativeWork.")
@click.option("--title", help="Title recorded in the manifest (default: file name).")
@training_option
@click.option("--no-watermark", is_flag=True, help="Do not embed guard's invisible watermark.")
@click.option(
    "--sidecar", is_flag=True, help="Write the manifest to a .c2pa file beside the image."
)
@ledger_option
@identity_options
@watermark_key_option()
@force_option
@json_option
@handle_errors
def command(
    images: tuple[Path, ...],
    output: Path | None,
    out_dir: Path | None,
    source: str,
    author: str | None,
    title: str | None,
    training: str,
    no_watermark: bool,
    sidecar: bool,
    ledger_path: Path | None,
    identity: object,
    key_file: Path | None,
    force: bool,
    as_json: bool,
) -> None:
    """Sign IMAGES: embed a watermark, then a C2PA manifest saying who made them and how."""
    from guard.cli._common import PerFile, check_collisions, read_key
    from guard.ledger import Ledger
    from guard.media import imageio
    from guard.media.atomic_write import make_folder
    from guard.provenance.vocab import source_uri
    from guard.publishing import default_output, sign

    if output and len(images) > 1:
        raise click.UsageError("-o/--output takes one input; use --out-dir for several")
    try:
        source_uri(source)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--source") from None

    def target(src: Path, fmt: str | None) -> Path | None:
        if output is not None:
            return output
        if fmt is None:
            return None  # not an image: reported when its turn comes
        return default_output(src, fmt, ".signed", out_dir)

    plan = []
    for src in images:
        out = target(src, imageio.sniff_format(src))
        if out is not None:
            plan.append((src, [out, out.with_suffix(".c2pa")] if sidecar else [out]))
    check_collisions(plan)  # before any work: --force never overwrites the run's own files
    watermark_key = read_key(key_file)
    results = []
    batch = PerFile(len(images))
    with Ledger(ledger_path) as ledger:
        for src in images:
            with batch.file():
                loaded = imageio.load(src)  # before the identity: a bad input creates nothing
                out = target(src, loaded.format)
                if out is not None:  # -o's or --out-dir's folder, before the identity too
                    make_folder(out.parent)
                published = sign(
                    loaded,
                    out,
                    source=source,
                    author=author,
                    title=title,
                    training=training,  # type: ignore[arg-type]
                    identity=identity.resolve(),  # type: ignore[attr-defined]
                    watermark=not no_watermark,
                    watermark_key=watermark_key,
                    ledger=ledger,
                    force=force,
                    sidecar=sidecar,
                )
                results.append(published)
                for note in published.notes:
                    click.echo(f"guard: {src}: {note}", err=True)
                if not as_json:
                    mark = f", watermark {published.watermark_id}" if published.watermark_id else ""
                    click.echo(f"{published.path}  (signed{mark})")
    if as_json:
        emit_json([r.to_dict() for r in results])
    batch.finish()
