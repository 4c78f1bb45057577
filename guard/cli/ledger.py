"""`guard ledger`: the record of every watermark ID guard signed (a SQLite file or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import click

from guard.cli._common import LedgerParam, emit_json, handle_errors, json_option, ledger_option


@click.group("ledger")
def command() -> None:
    """Look up, export and import watermark records."""


@command.command("show")
@click.argument("watermark_id")
@ledger_option
@json_option
@handle_errors
def show(watermark_id: str, ledger_path: Path | str | None, as_json: bool) -> None:
    """Show the record for WATERMARK_ID (exit 1 if there is none)."""
    from guard.ledger import Ledger

    with Ledger(ledger_path) as ledger:
        record = ledger.get(watermark_id)
    if record is None:
        click.echo(f"no record for {watermark_id}", err=True)
        raise SystemExit(1)
    info = record.to_json() | {"manifest": f"{len(record.manifest or b'')} bytes"}
    info.pop("thumbnail")
    info["fingerprint"] = f"{len(record.fingerprint)} bytes" if record.fingerprint else None
    if as_json:
        emit_json(info)
        return
    if record.verified is False:
        click.echo(
            "  (unverified: imported, and its manifest did not verify; signer and summary are "
            "unchecked claims)"
        )
    for k, v in info.items():
        click.echo(f"{k:>15}: {v}")


@command.command("export")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@ledger_option
@json_option
@handle_errors
def export(output: Path, ledger_path: Path | str | None, as_json: bool) -> None:
    """Write every record to OUTPUT (JSON Lines)."""
    from guard.ledger import Ledger

    with Ledger(ledger_path) as ledger:
        n = ledger.export(output)
    emit_json({"exported": n, "file": str(output)}) if as_json else click.echo(
        f"exported {n} records to {output}"
    )


@command.command("import")
@click.argument("source", type=LedgerParam())
@click.option(
    "--keep-unverified",
    is_flag=True,
    help="Import records whose manifest does not verify, flagged as unverified (default: refuse).",
)
@ledger_option
@json_option
@handle_errors
def import_(
    source: Path | str, keep_unverified: bool, ledger_path: Path | str | None, as_json: bool
) -> None:
    """Add the records in SOURCE; existing ones are kept.

    SOURCE is a file from 'guard ledger export': every line is validated and every stored
    manifest checked first, then all records are added in one transaction, or none. Or SOURCE
    is another ledger of yours (a SQLite file, or postgresql://…): its records are copied as
    they are there, in one transaction. That moves a ledger between SQLite and PostgreSQL.
    """
    from guard.ledger import Ledger
    from guard.ledger.sqlite import is_sqlite_file

    if isinstance(source, str) or is_sqlite_file(source):
        with Ledger(source, read_only=True) as origin, Ledger(ledger_path) as ledger:
            added, skipped = ledger.copy_from(origin)
        if as_json:
            emit_json({"added": added, "already_present": skipped})
        else:
            click.echo(f"copied {added} records ({skipped} already present)")
        return
    with Ledger(ledger_path) as ledger:
        before = {r.watermark_id for r in ledger}
        added, skipped = ledger.import_(source, keep_unverified=keep_unverified)
        unverified = sum(1 for r in ledger if r.watermark_id not in before and r.verified is False)
    if as_json:
        out = {"added": added, "already_present": skipped}
        emit_json(out | {"unverified": unverified} if keep_unverified else out)
    else:
        flagged = f", {unverified} flagged unverified" if unverified else ""
        click.echo(f"added {added} records ({skipped} already present{flagged})")
