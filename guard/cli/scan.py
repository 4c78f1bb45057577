"""`guard scan`: may this data set be used for training, and which images are AI-generated?"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

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
from guard.scan.budget import DEFAULT_FILE_TIMEOUT

if TYPE_CHECKING:
    from guard.scan.api import ScanOptions

_ADDRESS = re.compile(r"^(auto|local|[a-z][a-z0-9+.-]*://\S+|[\w.-]+:\d+)$")


@click.command("scan")
@click.argument("datasets", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("scan-report.parquet"),
    show_default=True,
    help="Parquet report, one row per image; an interrupted scan into it resumes.",
)
@click.option(
    "--keep-list",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the allowed images' paths here, one per line.",
)
@click.option(
    "--copy-clean",
    type=click.Path(file_okay=False, path_type=Path),
    help="Copy the allowed images into this folder (layout kept, nothing overwritten).",
)
@click.option(
    "--policy",
    default="strict",
    show_default=True,
    help="strict, permissive, or a .toml/.yaml policy file (see docs/scan.md).",
)
@click.option("--workers", type=int, help="Worker processes (default: every core; 0: in-process).")
@click.option(
    "--file-timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_FILE_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Time one image's check may take in a worker; past it the worker is replaced and the "
    "image is unverifiable. 0: no limit.",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Run on Ray: alone, a local Ray instance; with ADDRESS (auto, ray://host:10001, "
    "host:6379), join that cluster.",
)
@click.option(
    "--no-watermark",
    is_flag=True,
    help="Metadata only: skip guard's and third-party watermark checks (faster).",
)
@trust_option
@watermark_key_option(old_spelling=True)
@ledger_option
@resolver_option
@upload_option
@fetch_remote_option
@click.option(
    "--user-agent",
    help="Your crawler's name: X-Robots-Tag directives addressed to it (NAME: noai) count too.",
)
@click.option("--fresh", is_flag=True, help="Ignore an earlier, unfinished scan into --report.")
@click.option(
    "--summary",
    "summary_of",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Do not scan: print the counts of an existing REPORT and draw its chart.",
)
@click.option(
    "--chart",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to draw the summary chart (PNG; default with --summary: REPORT.png).",
)
@json_option
@handle_errors
def command(
    datasets: tuple[Path, ...],
    report: Path,
    keep_list: Path | None,
    copy_clean: Path | None,
    policy: str,
    workers: int | None,
    file_timeout: float,
    ray_address: str | None,
    no_watermark: bool,
    trust_files: tuple[Path, ...],
    key_file: Path | None,
    ledger_path: Path | None,
    resolver_urls: tuple[str, ...],
    upload_to_resolver: bool,
    fetch_remote: bool,
    user_agent: str | None,
    fresh: bool,
    summary_of: Path | None,
    chart: Path | None,
    as_json: bool,
) -> None:
    """Scan DATASETS (folders, .txt/.parquet path lists, WebDataset .tar shards) for training
    opt-outs and AI-generated images; write a Parquet report and, optionally, the clean subset.

    Decisions: allowed, opted_out, ai_generated, unverifiable (a file that could not be checked
    is never allowed). Exit code 0 when the scan finished, 2 on a usage or input error.
    """
    from guard.scan import forkserver

    if summary_of is not None:
        if datasets:
            raise click.UsageError("--summary reads a report; give no DATASETS with it")
        _summary(summary_of, chart or summary_of.with_suffix(".png"), as_json)
        return
    if ray_address is not None and not _ADDRESS.match(ray_address):
        if Path(ray_address).exists():  # `--ray data/`: the folder is a data set, Ray is local
            datasets, ray_address = (Path(ray_address), *datasets), "local"
        else:
            raise click.UsageError(f"--ray {ray_address}: not a Ray address or a data set")
    if not datasets:
        raise click.UsageError("give at least one DATASET (or --summary REPORT)")
    if keep_list and copy_clean:
        raise click.UsageError("--keep-list and --copy-clean: choose one")
    if ray_address is None and (workers is None or workers > 0):
        forkserver.start(forkserver.preload(not no_watermark))  # imports beside the ones below

    from guard.cli._common import read_key
    from guard.resolvers import from_env
    from guard.scan import export
    from guard.scan import report as report_mod

    resolvers = from_env(resolver_urls, upload=upload_to_resolver)
    options: ScanOptions = dict(
        policy=policy,
        watermark=not no_watermark,
        watermark_key=read_key(key_file),
        trust_files=trust_files,
        ledger=ledger_path,
        user_agent=user_agent,
        file_timeout=file_timeout or None,
        resolvers=resolvers.urls if resolvers else (),
        upload_to_resolver=upload_to_resolver,
        fetch_remote=fetch_remote,
    )
    if ray_address is not None:
        from guard.scan.api import scan_on_ray

        scan_on_ray(
            datasets,
            report,
            address=None if ray_address == "local" else ray_address,
            num_cpus=workers if ray_address == "local" else None,
            fresh=fresh,
            **options,
        )
    else:
        from guard.progress import drawn
        from guard.scan.api import scan

        _without_pandas()
        # the bar, and the walk that counts the data set for it, only where the bar is seen
        for _ in scan(
            datasets, report=report, workers=workers, fresh=fresh, progress=drawn(), **options
        ):
            pass
    summary = report_mod.summarize(report)
    out = {"report": str(report), **summary.to_dict()}
    if keep_list:
        out["keep_list"] = {"path": str(keep_list), "images": export.keep_list(report, keep_list)}
    if copy_clean:
        copied = export.copy_clean(report, copy_clean)
        out["copy_clean"] = {
            "folder": str(copy_clean),
            "copied": copied.copied,
            "already_there": copied.already_there,
            "companions": copied.companions,
            "skipped": copied.skipped,
        }
    if chart:
        from guard.scan import chart as chart_mod

        out["chart"] = str(chart_mod.write(summary, chart))
    if as_json:
        emit_json(out)
        return
    click.echo("\n".join(summary.lines()))
    click.echo(f"report: {report}")
    if keep_list:
        click.echo(f"allowed images listed in {keep_list} ({out['keep_list']['images']})")
    if copy_clean:
        c = out["copy_clean"]
        click.echo(
            f"copied {c['copied']} allowed images to {copy_clean}"
            + (f" ({c['already_there']} already there)" if c["already_there"] else "")
            + (f", with {c['companions']} captions and sidecars" if c["companions"] else "")
        )
        for line in c["skipped"]:
            click.echo(f"  not copied: {line}", err=True)
    if chart:
        click.echo(f"chart: {chart}")


def _without_pandas() -> None:
    """pyarrow imports pandas at its first conversion of Python values (0.3-0.4 s of CPU, as
    much as checking 150 images) only to ask whether they are pandas objects; the report's rows
    never are, and nothing else in this command's process uses pandas. pyarrow asks once per
    process, so it is asked here with pandas hidden, and remembers that there is none."""
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    hidden = _NoPandas()
    sys.meta_path.insert(0, hidden)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(hidden)


class _NoPandas:
    """An import finder for which pandas is not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] == "pandas":
            raise ImportError(f"{name} is hidden from pyarrow's check here")


def _summary(report: Path, chart: Path, as_json: bool) -> None:
    from guard.scan import chart as chart_mod
    from guard.scan import report as report_mod

    if not report.is_file():
        raise report_mod.ReportError(f"{report}: no such report")
    summary = report_mod.summarize(report)
    chart_mod.write(summary, chart, title=report.name)
    if as_json:
        emit_json({"report": str(report), "chart": str(chart), **summary.to_dict()})
        return
    click.echo("\n".join(summary.lines()))
    click.echo(f"chart: {chart}")
