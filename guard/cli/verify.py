"""`guard verify`: where did this image come from, and may it be used for training?"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from guard.cli._common import (
    emit_json,
    fetch_remote_option,
    handle_errors,
    json_option,
    ledger_option,
    resolver_option,
    trust_option,
    upload_option,
    watermark_key_option,
)


@click.command("verify")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@trust_option
@click.option("--no-watermark", is_flag=True, help="Skip the watermark and third-party mark check.")
@watermark_key_option(old_spelling=True)
@ledger_option
@resolver_option
@upload_option
@fetch_remote_option
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    help="Worker processes for many files (default: every core when the batch repays "
    "starting them; 0: in this process).",
)
@json_option
@handle_errors
def command(
    paths: tuple[Path, ...],
    trust_files: tuple[Path, ...],
    no_watermark: bool,
    key_file: Path | None,
    ledger_path: Path | None,
    resolver_urls: tuple[str, ...],
    upload_to_resolver: bool,
    fetch_remote: bool,
    workers: int | None,
    as_json: bool,
) -> None:
    """Verify PATHS (files or folders), on every core, in the order given.

    Exit code: 0 every file trusted or valid, 1 some file invalid, without credentials or with
    only a remote manifest not read, 2 usage or input error.
    """
    from tqdm import tqdm

    from guard.cli._common import PerFile, expand_images, read_key
    from guard.resolvers import from_env
    from guard.scan.batch import verify_many

    resolvers = from_env(resolver_urls, upload=upload_to_resolver)
    files = expand_images(paths)
    key = read_key(key_file)
    worst, out = 0, []
    # every file gets a result, a single one too: an input error is its JSON entry
    batch = PerFile(
        len(files),
        echo=lambda line: tqdm.write(line, file=sys.stderr),
        quiet=as_json,
        raise_single=False,
    )
    verdicts = verify_many(
        files,
        trust_files=trust_files,
        watermark=not no_watermark,
        watermark_key=key,
        ledger=ledger_path,
        resolvers=resolvers,
        fetch_remote=fetch_remote,
        workers=workers,
        progress=len(files) >= 5,
    )
    for path, v in verdicts:
        with batch.file() as outcome:
            if isinstance(v, BaseException):
                raise v  # what verify(path) raised, in its worker: one line, the batch goes on
        if outcome.error is not None or isinstance(v, BaseException):
            out.append({"file": str(path), "error": outcome.error})
            continue
        worst = max(worst, 0 if v.ok else 1)
        out.append(v.to_dict())
        if not as_json:
            tqdm.write("\n".join(v.summary()))
    if as_json:
        emit_json(out)
    batch.finish(worst)
