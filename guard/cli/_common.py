"""Shared CLI plumbing: one error format, one JSON emitter, shared options."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from guard.errors import GuardError
from guard.provenance.vocab import TRAINING_VALUES

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
force_option = click.option("--force", is_flag=True, help="Overwrite an existing output file.")


class LedgerParam(click.ParamType):
    """A SQLite file or a postgresql:// URL, told apart by guard.config.ledger_location."""

    name = "FILE|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from guard import config

        location = config.ledger_location(value)
        if isinstance(location, Path) and location.is_dir():
            self.fail(f"{location} is a directory, not a ledger file", param, ctx)
        return location


ledger_option = click.option(
    "--ledger",
    "ledger_path",
    type=LedgerParam(),
    help=(
        "Ledger: a SQLite file, or a PostgreSQL database shared by many writers "
        "(postgresql://…; default: GUARD_LEDGER, else the file in your guard data folder)."
    ),
)
training_option = click.option(
    "--training",
    type=click.Choice(TRAINING_VALUES),
    default="notAllowed",
    show_default=True,
    help="AI training / data mining permission recorded in the Content Credentials.",
)
trust_option = click.option(
    "--trust",
    "trust_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Extra trusted CA certificate (PEM); repeatable.",
)
resolver_option = click.option(
    "--resolver",
    "resolver_urls",
    multiple=True,
    metavar="URL",
    help=(
        "C2PA soft binding resolver to ask when the local ledger has no record for a found "
        "watermark; repeatable, asked in order (default: GUARD_RESOLVERS, space- or "
        "comma-separated). Its records are checked like local ones (docs/resolvers.md)."
    ),
)
upload_option = click.option(
    "--upload-to-resolver",
    "upload_to_resolver",
    is_flag=True,
    help=(
        "Also send the file itself to each --resolver (POST /matches/byContent), which finds "
        "marks guard cannot read here (a platform's private key). This gives your image to "
        "those servers; the verdict says that it was sent and to whom. Off by default."
    ),
)
fetch_remote_option = click.option(
    "--fetch-remote",
    is_flag=True,
    help=(
        "Fetch a manifest store a file only points to (XMP dcterms:provenance, or a recorded "
        'Link: rel="c2pa-manifest" header) and check it against the file, with the resolvers\' '
        "bounded client (timeouts, size cap, no redirects). Without it such a file is reported "
        "remote, not fetched (docs/verify-json.md)."
    ),
)
_KEY_FILE = click.Path(dir_okay=False, path_type=Path)
WATERMARK_KEY_HELP = (
    "Private watermark key file (default: guard's public key, which anyone can detect)."
)


def watermark_key_option(*, old_spelling: bool = False) -> Callable[[F], F]:
    """--watermark-key FILE, passed on as `key_file`. `--key` is the PEM signing key beside
    `--cert` in every command; verify, scan and watermark once used it for the watermark key, so
    there (old_spelling) it is still taken, hidden and deprecated, for one release."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(
            *args: Any, key_file: Path | None, old_key_file: Path | None = None, **kwargs: Any
        ) -> Any:
            if key_file is not None and old_key_file is not None and key_file != old_key_file:
                raise click.UsageError("--key is the old spelling of --watermark-key; give one")
            return fn(*args, key_file=key_file or old_key_file, **kwargs)

        out = click.option("--watermark-key", "key_file", type=_KEY_FILE, help=WATERMARK_KEY_HELP)(
            wrapper
        )
        if old_spelling:
            out = click.option(
                "--key",
                "old_key_file",
                type=_KEY_FILE,
                hidden=True,
                deprecated="use --watermark-key; --key means the signing key beside --cert",
            )(out)
        return out  # type: ignore[return-value]

    return decorate


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
        from guard.identity import Identity
        from guard.identity.local_ca import init_local

        cert, key, name, org, tsa_url = self.args
        if bool(cert) != bool(key):
            raise click.UsageError("--cert and --key go together")
        if cert:
            return Identity.from_files(cert, key, tsa_url=tsa_url)
        if not (config.identity_dir() / "signer.pem").exists():
            init_local(name=name, org=org, tsa_url=tsa_url)
        return Identity.default(tsa_url=tsa_url)


def expand_images(paths: tuple[Path, ...] | list[Path]) -> list[Path]:
    """Files as given; folders walked (sorted) for files with an image extension. A folder with
    no image is an input error: an empty result must not read as "all checked, all fine"."""
    from guard.errors import ImageInputError
    from guard.media.formats import EXTENSIONS

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = [
                p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in EXTENSIONS
            ]
            if not found:
                kinds = ", ".join(sorted(set(EXTENSIONS)))
                raise ImageInputError(f"{path}: no images in this folder (looked for {kinds})")
            files.extend(found)
        else:
            files.append(path)
    return files


def check_collisions(plan: Sequence[tuple[Path, Sequence[Path]]]) -> None:
    """Refuse a batch, before any work, in which two inputs would be written to one file or an
    output would replace one of the run's inputs. `plan` pairs each input with the files it will
    write (the image, a sidecar). --force never changes this: it replaces files from earlier
    runs, never the run's own output or input."""
    from guard.errors import OutputCollisionError

    inputs = {_key(src): src for src, _ in plan}
    inodes = {}
    for src in inputs.values():
        with contextlib.suppress(OSError):
            st = src.stat()
            inodes[(st.st_dev, st.st_ino)] = src
    owners: dict[str, Path] = {}
    for src, outs in plan:
        for out in outs:
            k = _key(out)
            same = inputs.get(k)
            if same is None and out.exists():
                with contextlib.suppress(OSError):
                    st = out.stat()
                    same = inodes.get((st.st_dev, st.st_ino))
            if same is not None:
                raise OutputCollisionError(
                    f"{out}: is an input of this run ({same}) and would be overwritten by the "
                    f"output for {src}; guard never modifies its inputs, choose another output "
                    "name or --out-dir"
                )
            if k in owners:
                raise OutputCollisionError(
                    f"{out}: both {owners[k]} and {src} would be written here; nothing was "
                    "done. Rename one, or write them into different --out-dir folders"
                )
            owners[k] = src


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


class PerFile:
    """The per-file loop of batch commands: one bad file is one line on stderr and the batch
    goes on; a single input keeps its own exit path (the error is raised as is).

        batch = PerFile(len(items))
        for item in items:
            with batch.file() as outcome:
                ...
            # outcome.error: the failed file's one line, else None
        batch.finish()   # exit 2 if any file failed, else `otherwise` (0)

    `echo` prints a failure line (default: stderr; a progress bar's own writer); `quiet` prints
    none, when the failures go into JSON instead. `raise_single=False` reports a single input
    like any other (verify's JSON has an entry for it).
    """

    def __init__(
        self,
        count: int,
        *,
        echo: Callable[[str], None] | None = None,
        quiet: bool = False,
        raise_single: bool = True,
    ) -> None:
        self.single = count == 1 and raise_single
        self.echo = None if quiet else echo or _to_stderr
        self.failed = 0

    @contextlib.contextmanager
    def file(self) -> Iterator[Outcome]:
        outcome = Outcome()
        try:
            yield outcome
        except (GuardError, OSError) as exc:
            if self.single:
                raise
            self.failed += 1
            outcome.error = os_error_line(exc) if isinstance(exc, OSError) else str(exc)
            if self.echo is not None:
                self.echo(f"guard: error: {outcome.error}")

    def finish(self, otherwise: int = 0) -> None:
        """Exit 2 when a file failed, else with `otherwise` when it is not 0."""
        if self.failed:
            raise SystemExit(2)
        if otherwise:
            raise SystemExit(otherwise)


def _to_stderr(line: str) -> None:
    click.echo(line, err=True)


@dataclass
class Outcome:
    """What became of one file of a batch: `error` is its one line when it failed."""

    error: str | None = None


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
