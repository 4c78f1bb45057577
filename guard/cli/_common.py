"""Shared CLI plumbing: one error format, one JSON emitter, shared options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from guard.errors import GuardError
from guard.provenance.vocab import TRAINING_VALUES

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
force_option = click.option("--force", is_flag=True, help="Overwrite an existing output file.")
ledger_option = click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Ledger file (default: GUARD_LEDGER, else the one in your guard data folder).",
)
training_option = click.option(
    "--training",
    type=click.Choice(TRAINING_VALUES),
    default="notAllowed",
    show_default=True,
    help="AI training / data mining permission recorded in the Content Credentials.",
)
device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cuda", "mps", "cpu"]),
    default="auto",
    show_default=True,
    help="Where to run the model.",
)


def fail(message: str, code: int = 2) -> None:
    click.echo(f"guard: error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: F) -> F:
    """Turn expected failures into one line on stderr and exit code 2, never a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GuardError as exc:
            fail(str(exc), exc.exit_code)
        except OSError as exc:  # a folder guard cannot write, a full disk: name the path
            fail(os_error_line(exc))
        except KeyboardInterrupt:
            fail("interrupted; no partial output was left behind.", 130)

    return wrapper  # type: ignore[return-value]


def os_error_line(exc: OSError) -> str:
    """One line for a file-system failure: the path first, then the system's reason."""
    where = exc.filename if exc.filename is not None else "guard"
    other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    return f"{where}{other}: {exc.strerror or exc}"


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def identity_options(fn: F) -> F:
    """--cert/--key (an organisation's identity) or --name/--org (the local one), as `identity`."""

    @click.option(
        "--cert", type=click.Path(dir_okay=False), help="PEM certificate chain to sign with."
    )
    @click.option(
        "--key",
        type=click.Path(dir_okay=False),
        help="PEM private key for --cert (passphrase from GUARD_KEY_PASSPHRASE).",
    )
    @click.option("--name", "id_name", help="Your name, for a local identity created on first use.")
    @click.option(
        "--org", "id_org", help="Organisation, for a local identity created on first use."
    )
    @click.option("--tsa-url", help="RFC 3161 timestamp authority URL (needs network).")
    @functools.wraps(fn)
    def wrapper(
        *args: Any,
        cert: str | None,
        key: str | None,
        id_name: str | None,
        id_org: str | None,
        tsa_url: str | None,
        **kwargs: Any,
    ) -> Any:
        kwargs["identity"] = _LazyIdentity(cert, key, id_name, id_org, tsa_url)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


class _LazyIdentity:
    """Resolved at first use, inside handle_errors, so identity problems print as one line."""

    def __init__(self, cert, key, name, org, tsa_url) -> None:
        self.args = (cert, key, name, org, tsa_url)

    def resolve(self):
        from guard import config
        from guard.identity import Identity, init_local

        cert, key, name, org, tsa_url = self.args
        if bool(cert) != bool(key):
            raise click.UsageError("--cert and --key go together")
        if cert:
            return Identity.from_files(cert, key, tsa_url=tsa_url)
        if not (config.identity_dir() / "signer.pem").exists():
            init_local(name=name, org=org, tsa_url=tsa_url)
        return Identity.default(tsa_url=tsa_url)


def expand_images(paths: tuple[Path, ...] | list[Path]) -> list[Path]:
    """Files as given; folders walked (sorted) for files with an image extension."""
    from guard.imageio import EXTENSIONS

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in EXTENSIONS
            )
        else:
            files.append(path)
    return files


def read_key(path: Path | None) -> bytes | None:
    """A private watermark key file: its bytes are the key (any length; it is hashed)."""
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GuardError(f"{path}: cannot read the watermark key ({exc.strerror or exc})") from exc
    if not data.strip():
        raise GuardError(f"{path}: the watermark key file is empty")
    return data.strip()
