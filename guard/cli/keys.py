"""`guard keys`: the signing identity and the trust list. Private keys are never printed."""

from __future__ import annotations

from pathlib import Path

import click

from guard.cli._common import emit_json, force_option, handle_errors, json_option


@click.group("keys")
def command() -> None:
    """Manage your signing identity and the CAs you trust."""


@command.command("init")
@click.option("--name", help="Your name (certificate subject CN).")
@click.option("--org", help="Organisation (certificate subject O).")
@click.option("--tsa-url", help="Timestamp authority URL to use when signing (needs network).")
@force_option
@json_option
@handle_errors
def init(
    name: str | None, org: str | None, tsa_url: str | None, force: bool, as_json: bool
) -> None:
    """Create a local root CA and signing certificate."""
    from guard.identity import Identity
    from guard.identity.local_ca import init_local

    folder = init_local(name=name, org=org, force=force, tsa_url=tsa_url, quiet=as_json)
    info = Identity.default(create=False).describe() | {"folder": str(folder)}
    emit_json(info) if as_json else click.echo(f"identity ready in {folder}")


@command.command("show")
@json_option
@handle_errors
def show(as_json: bool) -> None:
    """Show the signing identity (public facts only)."""
    from guard import config
    from guard.identity import Identity

    info = Identity.default(create=False).describe() | {"folder": str(config.identity_dir())}
    if as_json:
        emit_json(info)
    else:
        for k, v in info.items():
            click.echo(f"{k:>20}: {v}")


@command.command("export-ca")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of stdout.",
)
@force_option
@handle_errors
def export_ca(output: Path | None, force: bool) -> None:
    """Print (or write) your CA certificate, for verifiers to trust with --trust."""
    from guard.errors import IdentityError
    from guard.identity.local_ca import local_ca_pem
    from guard.media.atomic_write import save_atomic

    pem = local_ca_pem()
    if pem is None:
        raise IdentityError("no local identity yet; run 'guard keys init' first")
    if output:
        save_atomic(output, pem, force=force)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(pem.decode(), nl=False)


@command.command("trust")
@click.argument("ca_pem", type=click.Path(dir_okay=False, path_type=Path))
@handle_errors
def trust_ca(ca_pem: Path) -> None:
    """Always trust signatures chaining to CA_PEM (adds it to the configured trust list)."""
    from guard.identity import trust

    dest = trust.add(ca_pem)
    click.echo(f"trusting {ca_pem} (copied to {dest})")
