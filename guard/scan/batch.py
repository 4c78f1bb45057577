"""`guard.verify_many`: `guard verify` over many files, on the scan's worker pool.

    for path, result in guard.verify_many(["a.png", "b.jpg"], watermark=True):
        ...   # result: the Verdict guard.verify(path) gives, or the error it raises

Every file gets exactly what `guard.verify(path, ...)` gives it (a `Verdict`) or raises (a
`GuardError` or `OSError`, handed back rather than raised, so one bad file does not end the
batch), in input order. The files are verified in worker processes, one per core
(guard.scan.local: at most two files per worker in flight, a worker that dies on a file is
replaced and the file is an error, the rest goes on). Each worker reads a file once and decodes
its pixels once, for the watermark, the ledger's content check and the third-party marks alike
(`guard.verdict.verify_bytes`); the C2PA store and the XMP are read from the bytes.

A small batch runs in this process: a pool costs a fraction of a second to start, which a few
files, or a few hundred without the watermark check, do not win back (`auto_workers`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from guard.errors import GuardError
from guard.scan import forkserver
from guard.scan.forkserver import auto_workers
from guard.scan.image import apply_env, guard_env, ledger_at
from guard.scan.item import DEFAULT_MAX_BYTES, Item
from guard.scan.sources import Unit

if TYPE_CHECKING:
    from guard.ledger import Ledger
    from guard.resolvers import Limits, Resolvers
    from guard.verdict import Verdict

P = TypeVar("P", bound="str | os.PathLike[str]")


@dataclass(frozen=True)
class VerifyJob:
    """verify's parameters, sent once to each worker (guard.scan.local.Job)."""

    trust_files: tuple[str, ...] = ()
    watermark: bool = True
    watermark_key: bytes | None = None
    ledger_path: str | None = None  # a SQLite file or postgresql:// URL; None: the default
    resolvers: Resolvers | None = None
    fetch_remote: bool | Limits = False
    file_timeout: float | None = None
    max_bytes: int = DEFAULT_MAX_BYTES  # the pool's limit for shard members (no shard here)
    env: dict[str, str] = field(default_factory=guard_env, compare=False)
    # in this process only: the caller's open ledger (never sent to a worker)
    ledger: Ledger | None = field(default=None, compare=False, repr=False)

    @property
    def preload(self) -> tuple[str, ...]:
        return forkserver.preload(self.watermark)

    def setup(self) -> None:
        apply_env(self.env)

    def run(self, item: Item) -> Verdict | GuardError | OSError:
        from guard.verdict import verify

        assert item.file is not None
        try:
            return verify(
                item.file,
                trust_files=self.trust_files,
                watermark=self.watermark,
                watermark_key=self.watermark_key,
                ledger=self.ledger or ledger_at(self.ledger_path),
                resolvers=self.resolvers,
                fetch_remote=self.fetch_remote,
            )
        except (GuardError, OSError) as exc:
            return exc

    def failed(self, item: Item, words: str) -> Verdict | GuardError | OSError:
        return GuardError(f"{item.path}: {words}")


def verify_many(
    paths: Iterable[P],
    *,
    trust_files: Iterable[str | os.PathLike[str]] = (),
    watermark: bool = True,
    watermark_key: bytes | None = None,
    ledger: Ledger | str | os.PathLike[str] | None = None,
    resolvers: Resolvers | None = None,
    fetch_remote: bool | Limits = False,
    workers: int | None = None,
    file_timeout: float | None = None,
    progress: bool = False,
) -> Iterator[tuple[P, Verdict | GuardError | OSError]]:
    """`(path, result)` for each of `paths` (files), in their order, as they are verified.

    `result` is the `Verdict` that `guard.verify(path, ...)` with the same parameters gives, or
    the `GuardError` / `OSError` it raises (an unreadable file, bytes that are no image and carry
    no credentials; also a file whose worker died on it, or whose check ran past
    `file_timeout` seconds). `ledger`: an open `Ledger`, a SQLite file or postgresql:// URL, or
    None for the default; it is opened here first, so a ledger that cannot be opened raises
    before any file is read. `workers`: processes (None: every core when the batch is large
    enough to repay them, see `auto_workers`; 0: this process). `progress`: a bar on stderr,
    drawn only on a terminal (guard.progress).
    """
    from guard import progress as progress_rule
    from guard.ledger import Ledger
    from guard.scan import budget, local

    budget.check(file_timeout)
    files = list(paths)
    workers = auto_workers(len(files), watermark) if workers is None else workers
    own = None if isinstance(ledger, Ledger) else Ledger(ledger)  # raises here if it cannot open
    book = ledger if isinstance(ledger, Ledger) else own
    assert book is not None
    job = VerifyJob(
        trust_files=tuple(str(p) for p in trust_files),
        watermark=watermark,
        watermark_key=watermark_key,
        ledger_path=str(book.path),
        resolvers=resolvers,
        fetch_remote=fetch_remote,
        file_timeout=file_timeout if workers > 0 else None,
        ledger=book if workers <= 0 else None,
    )
    if own is not None and workers > 0:
        own.close()  # each worker opens its own connection
        own = None
    units = (Unit(_name(p), "file") for p in files)
    bar = None
    if progress_rule.drawn(progress):  # tqdm is imported only for a bar (30 ms of a start)
        from tqdm import tqdm

        bar = tqdm(
            total=len(files),
            desc="verifying",
            unit="file",
            disable=progress_rule.disable(progress),
            leave=False,
        )
    try:
        for i, (result, _) in enumerate(local.run_job(units, job, workers=workers)):
            assert result is not None  # every unit is one file, so one answer
            if bar is not None:
                bar.update(1)
            yield files[i], result
    finally:
        if bar is not None:
            bar.close()
        if own is not None:
            own.close()


def _name(path: str | os.PathLike[str]) -> str:
    return os.fspath(path)


__all__ = ["VerifyJob", "auto_workers", "verify_many"]
