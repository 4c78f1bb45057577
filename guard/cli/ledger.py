"""`guard ledger`: the local record of every watermark ID guard signed."""

from __future__ import annotations

from pathlib import Path

import click

from guard.cli._common import emit_json, handle_errors, json_option, ledger_option


@click.group("ledger")
def command() -> None:
    """Look up, export and import watermark records."""


@command.command("show")
@click.argument("watermark_id")
@ledger_option
@json_option
@handle_errors
def show(watermark_id: str, ledger_path: Path | None, as_json: bool) -> None:
    """Show the record for WATERMARK_ID (exit 1 if there is none)."""
    from guard.ledger import Ledger

    with Ledger(ledger_path) as ledger:
        record = ledger.get(watermark_id)
    if record is None:
        click.echo(f"no record for {watermark_id}", err=True)
        raise SystemExit(1)
    info = record.to_json() | {"manifest": f"{len(record.manifest or b'')} bytes"}
    info.pop("thumbnail")
    if as_json:
        emit_json(info)
    else:
        for k, v in info.items():
            click.echo(f"{k:>15}: {v}")


@command.command("export")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@ledger_option
@json_option
@handle_errors
def export(output: Path, ledger_path: Path | None, as_json: bool) -> None:
    """Write every record to OUTPUT (JSON Lines)."""
    from guard.ledger import Ledger

    with Ledger(ledger_path) as ledger:
        n = ledger.export(output)
    emit_json({"exported": n, "file": str(output)}) if as_json else click.echo(
        f"exported {n} records to {output}"
    )


@command.command("import")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@ledger_option
@json_option
@handle_errors
def import_(source: Path, ledger_path: Path | None, as_json: bool) -> None:
    """Add the records in SOURCE (from 'guard ledger export'); existing ones are kept."""
    from guard.ledger import Ledger

    with Ledger(ledger_path) as ledger:
        added, skipped = ledger.import_(source)
    if as_json:
        emit_json({"added": added, "already_present": skipped})
    else:
        click.echo(f"added {added} records ({skipped} already present)")
