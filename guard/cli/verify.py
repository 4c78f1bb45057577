"""`guard verify`: where did this image come from, and may it be used for training?"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

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
    from guard.cli._common import PerFile, expand_images, read_key
    from guard.scan import forkserver

    files = expand_images(paths)
    watermark = not no_watermark
    if (forkserver.auto_workers(len(files), watermark) if workers is None else workers) > 0:
        forkserver.start(forkserver.preload(watermark))  # its imports run beside the ones below

    from guard import progress
    from guard.resolvers import from_env
    from guard.scan.batch import verify_many

    resolvers = from_env(resolver_urls, upload=upload_to_resolver)
    bar = progress.drawn(len(files) >= 5)
    write = _writer(bar)
    key = read_key(key_file)
    worst, out = 0, []
    # every file gets a result, a single one too: an input error is its JSON entry
    batch = PerFile(
        len(files),
        echo=lambda line: write(line, sys.stderr),
        quiet=as_json,
        raise_single=False,
    )
    verdicts = verify_many(
        files,
        trust_files=trust_files,
        watermark=watermark,
        watermark_key=key,
        ledger=ledger_path,
        resolvers=resolvers,
        fetch_remote=fetch_remote,
        workers=workers,
        progress=bar,
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
            write("\n".join(v.summary()), sys.stdout)
    if as_json:
        emit_json(out)
    batch.finish(worst)


def _writer(bar: bool) -> Callable[[str, TextIO], None]:
    """Lines printed past the progress bar, through tqdm only when there is one (importing it
    costs 30 ms of every start)."""
    if bar:
        from tqdm import tqdm

        return lambda line, stream: tqdm.write(line, file=stream)
    return lambda line, stream: print(line, file=stream)
