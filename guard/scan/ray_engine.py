"""The Ray engine: Ray Data reads, guard's per-image function maps, Parquet is written.

    read_binary_files / read_webdataset  ->  map_batches(scan_batch)  ->  write_parquet

No guard-specific server: any Ray cluster whose workers have guard installed
(`pip install guard[scale]`) and can read the data set's paths scales the scan out. Each
worker process keeps one ledger connection. `scan_dataset` is the same map for platforms that already
hold a Ray Dataset. Ray is imported only here, inside functions.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from guard.errors import GuardError
from guard.scan import local
from guard.scan.image import Settings, scan_item
from guard.scan.item import IMAGE_SUFFIXES, Item, parse_meta
from guard.scan.row import ScanRow
from guard.scan.shards import irregular_samples, member_path
from guard.scan.sources import Unit, read_beside

WEBDATASET_FIELDS = ("__key__", "__url__")


class RayUnavailableError(GuardError):
    """Ray is not installed; it is the optional `scale` extra."""


def _ray():
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise RayUnavailableError(
            "the Ray engine needs Ray Data: pip install 'guard[scale]' (or 'ray[data]')"
        ) from exc
    return ray


def scan_batch(batch, settings: Settings):
    """Ray Data batch function: files or WebDataset samples in (pyarrow), report rows out.

    A plain function, not an actor class: Ray fuses it with the read into one task, so bytes
    never travel through the object store, and no actor can hold a CPU the reads wait for.
    """
    from guard.scan.report import table

    settings.apply_env()
    try:
        import cv2

        cv2.setNumThreads(1)  # one task per CPU already
    except ImportError:  # pragma: no cover
        pass
    return table(scan_item(item, settings) for item in items_of_rows(batch.to_pylist()))


def items_of_rows(rows: list[dict[str, Any]]) -> list[Item]:
    """Items from rows of `read_binary_files(include_paths=True)` or `read_webdataset`."""
    items: list[Item] = []
    for row in rows:
        if "__key__" not in row:
            path = row["path"]
            beside = read_beside(path) if os.path.exists(path) else (None, None, None)
            sidecar, meta, problem = beside
            items.append(
                Item(path=path, data=row["bytes"], sidecar=sidecar, meta=meta, problem=problem)
            )
            continue
        key, shard = row["__key__"], row.get("__url__")
        raw = row.get("json")
        meta, problem = parse_meta(raw) if raw is not None else (None, None)
        for suffix, data in row.items():
            if suffix in WEBDATASET_FIELDS or data is None or not _is_image(suffix):
                continue
            items.append(
                Item(
                    path=member_path(str(shard), f"{key}.{suffix}"),  # read_webdataset sets __url__
                    data=data,
                    sidecar=row.get("c2pa"),
                    meta=meta,
                    shard=shard,
                    key=key,
                    problem=problem,
                )
            )
    return items


def _is_image(suffix: str) -> bool:
    return "." + suffix.rsplit(".", 1)[-1].lower() in IMAGE_SUFFIXES


def scan_dataset(dataset, settings: Settings | None = None):
    """Map a Ray Dataset of images to a Dataset of report rows (the columns of ScanRow).

    `dataset` is what `ray.data.read_binary_files(paths, include_paths=True)` or
    `ray.data.read_webdataset(shards, decoder=None)` returns: bytes, not decoded images.
    """
    _ray()
    return dataset.map_batches(
        scan_batch,
        fn_kwargs={"settings": settings or Settings()},
        batch_size=64,
        batch_format="pyarrow",
        num_cpus=1,
    )


def run(
    units: Iterable[Unit],
    settings: Settings,
    writer,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
) -> Path:
    """Scan `units` on Ray (a local instance, or the cluster at `address`) into the report."""
    ray = _ray()
    started = False
    if not ray.is_initialized():
        if address in (None, "", "local"):
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started = True
    try:
        files, shards, local_only = [], [], []
        for unit in units:
            shard_file = unit.kind == "shard" and _size(unit.id) >= 0
            if shard_file and not irregular_samples(unit.id, settings.max_bytes):
                shards.append(unit.id)  # every sample together and bounded: Ray reads it as we do
            elif unit.kind != "file" or not 0 <= _size(unit.id) <= settings.max_bytes:
                local_only.append(unit)  # too large, gone, no regular file, unnamable: below
            else:
                files.append(unit.id)
        if files or shards:
            # a shard Ray cannot parse must not fail the whole job: its blocks are dropped and
            # the shard is read again below by guard's own reader, which reports it row by row
            # (a Dataset keeps the context it was made under, so this comes first)
            context = ray.data.DataContext.get_current()
            tolerated, context.max_errored_blocks = context.max_errored_blocks, -1
            try:
                datasets = []
                if files:
                    datasets.append(
                        ray.data.read_binary_files(
                            files, include_paths=True, override_num_blocks=_blocks(ray, len(files))
                        )
                    )
                if shards:
                    datasets.append(ray.data.read_webdataset(shards, decoder=None))
                mapped = [scan_dataset(ds, settings) for ds in datasets]
                combined = mapped[0].union(*mapped[1:]) if len(mapped) > 1 else mapped[0]
                combined.write_parquet(str(writer.ray_output_dir()))
            finally:
                context.max_errored_blocks = tolerated
        done = writer.adopt_ray_output()
        # files too large to read or gone, and shards Ray did not finish, are answered here
        leftovers = local_only + [Unit(f, "file") for f in files if f not in done]
        leftovers += [Unit(s, "shard") for s in shards if s not in done]
        if leftovers:  # in a worker process, so a file that crashes its decoder cannot kill us
            for row, finished in local.run(leftovers, settings, workers=1):
                if row is not None:
                    writer.add(row)
                if finished is not None:
                    writer.unit_done(finished)
        return writer.finish(writer.units)
    finally:
        if started:
            ray.shutdown()


def _blocks(ray, n_files: int) -> int:
    """Read tasks for n loose files: a few per CPU, at most ~1000 files each. Ray's default (a
    task per handful of files) spends more on task overhead than on a metadata check."""
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return max(1, min(n_files, max(2 * cpus, -(-n_files // 1000))))


def _size(path: str) -> int:
    """A regular file's size; -1 for anything Ray should not read (gone, a pipe that would
    block its reader, a device): the per-image function says why."""
    try:
        info = os.stat(path)
    except OSError:
        return -1
    return info.st_size if stat.S_ISREG(info.st_mode) else -1


def rows_of(dataset) -> list[ScanRow]:
    """Collect a scanned Dataset's rows (small data sets and tests)."""
    return [ScanRow.from_dict(r) for r in dataset.take_all()]
