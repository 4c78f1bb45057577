"""`guard.scan` and `guard.scan_dataset`: the library's front door to the gatekeeper.

for row in guard.scan(["dataset/"], report="report.parquet"):
    ...                                   # ScanRow, in input order, as they finish
guard.scan_dataset(ray.data.read_webdataset(shards, decoder=None))   # a Ray Dataset of rows
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from guard.resolvers.client import checked
from guard.scan.budget import DEFAULT_FILE_TIMEOUT
from guard.scan.image import Settings
from guard.scan.item import DEFAULT_MAX_BYTES, IMAGE_SUFFIXES
from guard.scan.policy import Policy
from guard.scan.policy import load as load_policy
from guard.scan.row import ScanRow
from guard.scan.sources import SourceError, Unit, check, units
from guard.scan.unit_set import UnitSet

if TYPE_CHECKING:  # pyarrow is imported only when a report is written
    from typing import Unpack  # novm (3.11, read by type checkers only: 3.10 never imports it)

    from guard.resolvers import Limits
    from guard.scan.report import ReportWriter


class ScanOptions(TypedDict, total=False):
    """What a scan checks and how: the one definition behind `scan`, `scan_on_ray` and
    `scan_dataset` (defaults in `settings_for`).

    policy: strict (default), permissive, a policy file or a Policy. watermark: look for marks
    (default True); watermark_key: a private watermark key. trust_files: extra CA PEM files.
    ledger: the ledger to resolve marks in. max_bytes: larger files are unverifiable unread.
    user_agent: the crawler X-Robots-Tag scopes name. file_timeout: seconds one image's check
    may take in a worker before the worker is killed and the image is `unverifiable` (None: no
    limit; with workers=0 there is no worker to stop, so no limit). resolvers: C2PA soft binding
    resolver URLs asked, in order, for a found mark the ledger has no record of (docs/resolvers.md;
    their time counts in file_timeout). upload_to_resolver: also send each such file, and each
    file without a readable mark, to those resolvers (POST /matches/byContent).
    fetch_remote: fetch a manifest store a file only points to and check it against the file
    (True, or the guard.resolvers.Limits to fetch under); without it such a file is
    unverifiable (c2pa_remote_unread).
    """

    policy: str | os.PathLike[str] | Policy | None
    watermark: bool
    watermark_key: bytes | None
    trust_files: Iterable[str | os.PathLike[str]]
    ledger: str | os.PathLike[str] | None
    max_bytes: int
    user_agent: str | None
    file_timeout: float | None
    resolvers: Iterable[str]
    upload_to_resolver: bool
    fetch_remote: bool | Limits


def settings_for(**options: Unpack[ScanOptions]) -> Settings:
    policy = options.get("policy")
    ledger = options.get("ledger")
    return Settings(
        policy=policy if isinstance(policy, Policy) else load_policy(policy),
        watermark=options.get("watermark", True),
        watermark_key=options.get("watermark_key"),
        trust_files=tuple(str(p) for p in options.get("trust_files", ())),
        ledger_path=str(ledger) if ledger else None,
        max_bytes=options.get("max_bytes", DEFAULT_MAX_BYTES),
        user_agent=options.get("user_agent"),
        file_timeout=options.get("file_timeout", DEFAULT_FILE_TIMEOUT),
        resolvers=checked(list(options.get("resolvers", ()))),
        upload_to_resolver=options.get("upload_to_resolver", False),
        fetch_remote=options.get("fetch_remote", False),
    )


def fingerprint(settings: Settings) -> str:
    """What must match for a report to be resumed: a report mixes no two policies."""
    return json.dumps(
        {"policy": settings.policy.to_dict(), "watermark": settings.watermark}, sort_keys=True
    )


def scan(
    paths: Iterable[str | os.PathLike[str]],
    *,
    report: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    fresh: bool = False,
    progress: bool = False,
    **options: Unpack[ScanOptions],
) -> Iterator[ScanRow]:
    """Scan folders, path lists (.txt/.parquet) and WebDataset shards; yield one row per image.

    With `report`, rows are also written to that Parquet file, and a scan that was interrupted
    resumes: units (files, shards) already in the report are skipped and not yielded again.
    `workers`: processes (default: every core; 0 runs in this process). The other options are
    `ScanOptions`.
    """
    settings = settings_for(**options)
    todo, total, writer = plan(paths, settings, report=report, fresh=fresh, count=progress)
    from guard.scan import local

    yield from local.scan_units(
        todo, settings, workers=workers, writer=writer, progress=progress, total=total
    )
    if writer is not None:
        writer.finish(writer.units)


def plan(
    paths: Iterable[str | os.PathLike[str]],
    settings: Settings,
    *,
    report: str | os.PathLike[str] | None,
    fresh: bool,
    count: bool,
) -> tuple[Iterator[Unit], int | None, ReportWriter | None]:
    """(the units still to scan, streamed; their image count when cheap to know; the writer).

    Nothing is listed up front: the data set is walked as it is scanned (and once more before,
    only to count it for the progress bar), so a scan of millions of files holds only the
    small sets of `guard.scan.unit_set`.
    """
    datasets = [os.fspath(p) for p in paths]
    check(datasets)
    writer = None
    if report is not None:
        from guard.scan.report import ReportWriter

        writer = ReportWriter(Path(report), fingerprint(settings), fresh=fresh)
        writer.units = UnitSet()
    total: int | None = None
    if count:
        total = 0
        for unit in _todo(datasets, writer, record=False):
            n = unit.count()
            if n is None:
                total = None
                break
            total += n
    return _todo(datasets, writer), total, writer


def _todo(datasets: list[str], writer: ReportWriter | None, record: bool = True) -> Iterator[Unit]:
    """The units not finished by an earlier run; every unit joins the report's scope."""
    done = writer.previous.done_units if writer is not None else None
    if done is not None and not len(done):
        done = None  # a fresh report: nothing to skip, no id to hash for it
    found = 0
    for unit in units(datasets):
        found += 1
        if record and writer is not None and writer.units is not None:
            writer.units.add(unit.id)
        if done is None or unit.id not in done:
            yield unit
    if not found:  # an empty success would read as "nothing here is opted out"
        raise SourceError(
            f"{', '.join(datasets)}: no images, shards or path lists found to scan "
            f"(images: {', '.join(sorted(IMAGE_SUFFIXES))}; shards: .tar, img2dataset's .parquet)"
        )


def scan_on_ray(
    paths: Iterable[str | os.PathLike[str]],
    report: str | os.PathLike[str],
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    fresh: bool = False,
    **options: Unpack[ScanOptions],
) -> Path:
    """The same scan on Ray (a local instance, or the cluster at `address`); returns the report."""
    from guard.scan import ray_engine

    settings = settings_for(**options)
    todo, _, writer = plan(paths, settings, report=report, fresh=fresh, count=False)
    assert writer is not None
    return ray_engine.run(todo, settings, writer, address=address, num_cpus=num_cpus)


def scan_dataset(dataset: Any, **options: Unpack[ScanOptions]) -> Any:
    """A Ray Dataset of images (bytes) -> a Ray Dataset of report rows; see ray_engine."""
    from guard.scan import ray_engine

    settings = settings_for(**options)
    return ray_engine.scan_dataset(dataset, settings)


__all__ = ["ScanRow", "Unit", "scan", "scan_dataset", "scan_on_ray", "settings_for"]
