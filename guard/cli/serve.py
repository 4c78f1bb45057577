"""`guard serve`: the web page and the C2PA soft binding resolution API (needs guard[serve])."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from guard.cli._common import (
    fail,
    handle_errors,
    identity_options,
    ledger_option,
    read_key,
    trust_option,
    watermark_key_option,
)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@ledger_option
@click.option("--read-only", is_flag=True, help="Serve verify and the resolution API only.")
@click.option(
    "--upstream",
    "upstreams",
    multiple=True,
    metavar="URL",
    help="A resolver to ask for what the local ledger cannot answer (byBinding, /manifests, "
    "and byContent by the mark's ID); repeatable, asked in parallel (docs/serve.md).",
)
@click.option(
    "--upstream-only",
    is_flag=True,
    help="No local ledger: answer from the --upstream resolvers only (with --read-only).",
)
@click.option(
    "--max-hops",
    default=4,
    show_default=True,
    type=click.IntRange(1, 16),
    help="Servers a query may have passed through before this one forwards it no further.",
)
@click.option(
    "--token", envvar="GUARD_SERVE_TOKEN", help="Token for sign/protect (needed off loopback)."
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File holding the token (safer than --token, which other users can see in ps).",
)
@trust_option
@watermark_key_option()
@click.option("--model", help="What protect defends against: hub id, diffusers folder or file.")
@click.option(
    "--device", type=click.Choice(["auto", "cuda", "mps", "cpu"]), default="auto", show_default=True
)
@click.option("--max-upload-mb", default=32, show_default=True, type=click.IntRange(1, 1024))
@click.option("--queue", "queue_size", default=8, show_default=True, type=click.IntRange(1, 1000))
@identity_options
@handle_errors
def command(
    host: str,
    port: int,
    ledger_path: Path | None,
    read_only: bool,
    upstreams: tuple[str, ...],
    upstream_only: bool,
    max_hops: int,
    token: str | None,
    token_file: Path | None,
    trust_files: tuple[Path, ...],
    key_file: Path | None,
    model: str | None,
    device: str,
    max_upload_mb: int,
    queue_size: int,
    identity: Any,
) -> None:
    """Open guard's web page: verify, sign and protect by drag and drop; and serve the C2PA soft
    binding resolution API over your ledger (/matches/byBinding, /matches/byContent,
    /manifests/{id}, /services/supportedAlgorithms). Loopback only unless given a token.
    """
    try:
        import uvicorn

        from guard.server import Limits, ServeSettings, create_app
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"guard serve needs the web extra ({exc.name} is missing): pip install 'guard[serve]'"
        ) from None
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise click.BadParameter(f"{token_file}: {exc.strerror or exc}") from None
        if not token:  # no token at all would leave sign and protect open to anyone here
            fail(
                f"{token_file}: the token file is empty; put a random token of 16+ characters in it"
            )
    elif token is not None and not token.strip():
        fail("--token is empty; give a random token of 16+ characters")
    try:
        settings = ServeSettings(
            host=host,
            port=port,
            ledger=ledger_path,
            read_only=read_only,
            upstreams=upstreams,
            upstream_only=upstream_only,
            max_hops=max_hops,
            token=token or None,
            trust_files=trust_files,
            watermark_key=read_key(key_file),
            identity=identity.resolve,
            model=model,
            device=device,
            limits=Limits(max_upload_bytes=max_upload_mb * 2**20, queue=queue_size),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"guard serve: http://{shown}:{port}/"
        + (" (read-only)" if read_only else "")
        + (f" (upstream: {', '.join(settings.upstreams)})" if settings.upstreams else "")
        + (" (no local ledger)" if upstream_only else "")
        + (" (token required for sign and protect)" if settings.token else ""),
        err=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
