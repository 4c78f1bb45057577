"""img2dataset's `output_format="parquet"`: the images are inside the Parquet file.

Each shard `00000.parquet` has one row per URL it tried: the input's own columns (`url`,
`caption`, any `save_additional_columns`), then `key`, `status` (`success`,
`failed_to_download`, `failed_to_resize`), `error_message`, `width`, `height`,
`original_width`, `original_height`, `exif`, `sha256`, and last the image bytes in a binary
column named after the encode format (`jpg`, `png` or `webp`). The other output formats write a
`.parquet` beside each shard with the same columns but no image column: that one is metadata,
not a sample shard. A failed row has no image and is no image of the data set.

A row is a sample: its member name is `KEY.FORMAT`, its metadata is the row's other columns
(so a header column such as `X-Robots-Tag` counts, as in a sample's .json). A key that is
missing, unsafe as a name, or repeated within the file makes its rows unverifiable, as a
duplicate tar member does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from guard.scan.item import UNNAMABLE, Item, name_is_safe, shown

IMAGE_COLUMNS = ("jpg", "png", "webp")  # img2dataset's encode formats
BATCH_ROWS = 16  # images per batch read: a row group of big images is still read in pieces


@dataclass(frozen=True)
class Row:
    member: str  # KEY.FORMAT (or #ROW.FORMAT when the row has no key)
    data: bytes | None
    meta: dict[str, Any]
    problem: str | None = None
    size: int | None = None  # of an image too large to hold


def image_column(path: str | os.PathLike[str]) -> str | None:
    """The image column of an img2dataset Parquet shard, from its schema alone; None for a
    Parquet file that holds no images (a path list, or img2dataset's metadata beside a shard)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception:  # pyarrow raises ArrowInvalid, OSError, ...: not our kind of file
        return None
    for name in IMAGE_COLUMNS:
        if name in schema.names:
            kind = schema.field(name).type
            if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
                return name
    return None


def count(path: str) -> int | None:
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:
        return None


def rows(path: str, max_bytes: int) -> Iterator[Row]:
    """Every row that holds (or should hold) an image, in file order. Keys seen twice are
    found in a first pass over the key column alone, so no image is read before it."""
    import pyarrow.parquet as pq

    column = image_column(path)
    if column is None:
        return
    pf = pq.ParquetFile(path)
    repeated = _repeated_keys(pf)
    index = 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS):
        for record in batch.to_pylist():
            index += 1
            image = record.pop(column, None)
            key = record.get("key")
            status = record.get("status")
            if image is None and status not in (None, "success"):
                continue  # img2dataset tried and failed: not an image of the data set
            member = f"{key}.{column}" if isinstance(key, str) and key else f"#{index}.{column}"
            problem = None
            if not isinstance(key, str) or not key:
                problem = "the row has no key: it cannot be named in a keep-list"
            elif not name_is_safe(key):
                member, problem = f"{shown(key)}.{column}", UNNAMABLE
            elif key in repeated:
                problem = "the Parquet shard holds this key more than once: no row of it is trusted"
            elif image is None:
                problem = "the row says success but holds no image"
            data = image if isinstance(image, bytes) and problem is None else None
            size: int | None = None
            if data is not None and len(data) > max_bytes:
                size, data = len(data), None
            yield Row(member, data, record, problem, size)


def _repeated_keys(pf: Any) -> set[str]:
    if "key" not in pf.schema_arrow.names:
        return set()
    seen: set[str] = set()
    repeated: set[str] = set()
    for batch in pf.iter_batches(columns=["key"], batch_size=65536):
        for key in batch.column(0).to_pylist():
            if isinstance(key, str):
                (repeated if key in seen else seen).add(key)
    return repeated


def read_parquet_shard(path: str, max_bytes: int) -> Iterator[Item]:
    """The images of one img2dataset Parquet shard as scan items; a damaged file ends with a
    problem item, as a damaged tar does."""
    try:
        for row in rows(path, max_bytes):
            yield Item(
                path=f"{path}#{row.member}",
                data=row.data,
                meta=row.meta,
                shard=path,
                key=row.member.rsplit(".", 1)[0],
                problem=row.problem,
                size=row.size,
            )
    except Exception as exc:  # pyarrow's errors have no common base but Exception
        yield Item(
            path=f"{path}#",
            shard=path,
            problem=f"the Parquet shard could not be read to the end ({type(exc).__name__}: {exc})",
        )
