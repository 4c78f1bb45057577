"""What a data set is made of: folders, path lists (text or Parquet) and WebDataset shards.

Sources yield *units*, the grain of resuming: a loose file, or a whole `.tar` shard
(guard.scan.shards reads one). A unit yields *items* (guard.scan.item), one per image. Nothing
here decodes an image or writes anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.errors import GuardError
from guard.media.safe_read import FileTooLarge, read_regular
from guard.scan.item import (
    DEFAULT_MAX_BYTES,
    IMAGE_SUFFIXES,
    MAX_META_BYTES,
    UNNAMABLE,
    Item,
    name_is_safe,
    parse_meta,
    shown,
)
from guard.scan.parquet_shards import count as parquet_count
from guard.scan.parquet_shards import image_column, read_parquet_shard
from guard.scan.shards import count_shard, read_shard
from guard.scan.unit_set import UnitSet

SHARD_SUFFIXES = (".tar",)
LIST_SUFFIXES = (".txt", ".lst", ".parquet")
PATH_COLUMNS = ("path", "file", "filename", "filepath", "image_path")


class SourceError(GuardError):
    """A data set argument that is neither an image, a shard, a folder nor a path list."""


@dataclass(frozen=True, slots=True)
class Unit:
    """The grain of resuming: one loose file or one shard."""

    id: str
    # "file" | "shard" (a WebDataset .tar) | "parquet" (img2dataset's Parquet output) |
    # "unnamable" (not UTF-8, or a control character; the id is escaped)
    kind: str

    def items(self, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Item]:
        if self.kind == "file":
            yield Item(path=self.id, file=self.id)
        elif self.kind == "unnamable":
            yield Item(path=self.id, problem=UNNAMABLE)
        elif self.kind == "parquet":
            yield from read_parquet_shard(self.id, max_bytes)
        else:
            yield from read_shard(self.id, max_bytes)

    def count(self) -> int | None:
        """Images in the unit, when that is cheap to know (uncompressed shards: headers only)."""
        if self.kind == "parquet":
            return parquet_count(self.id)
        return count_shard(self.id) if self.kind == "shard" else 1


def _norm(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.fspath(path))


def units(datasets: Iterable[str | os.PathLike[str]]) -> Iterator[Unit]:
    """Every unit of every DATASET argument, in a stable order, each once."""
    seen = UnitSet()
    for arg in datasets:
        for unit in _units_of(Path(arg)):
            if not name_is_safe(unit.id):  # a report and a keep-list line must hold it as text
                unit = Unit(shown(unit.id), "unnamable")
            if unit.id not in seen:
                seen.add(unit.id)
                yield unit


def check(datasets: Iterable[str | os.PathLike[str]]) -> None:
    """Raise SourceError now for an argument that is no data set; `units` walks lazily, so
    without this a bad last argument would only be noticed after everything before it."""
    for arg in datasets:
        path = Path(arg)
        if not path.exists():
            raise SourceError(f"{path}: no such file or folder")
        if path.is_file() and path.suffix.lower() in LIST_SUFFIXES and not _image_parquet(path):
            entries = _list_entries(path)
            next(entries, None)  # opens the list (and finds a Parquet list's path column)
            entries.close()


def _units_of(path: Path) -> Iterator[Unit]:
    if path.is_dir():
        yield from _walk(path)
    elif not path.exists():
        raise SourceError(f"{path}: no such file or folder")
    elif path.suffix.lower() in SHARD_SUFFIXES:
        yield Unit(_norm(path), "shard")
    elif _image_parquet(path):
        yield Unit(_norm(path), "parquet")
    elif path.suffix.lower() in LIST_SUFFIXES:
        yield from _list(path)
    else:
        yield Unit(_norm(path), "file")  # an image, or a file the scan will call unreadable


def _walk(folder: Path) -> Iterator[Unit]:
    """Images and shards below `folder`, sorted. A .parquet that holds images is img2dataset's
    Parquet output, a shard; one without (the metadata beside its other outputs) is skipped."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            suffix = os.path.splitext(name)[1].lower()
            if suffix in IMAGE_SUFFIXES:
                yield Unit(_norm(os.path.join(root, name)), "file")
            elif suffix in SHARD_SUFFIXES:
                yield Unit(_norm(os.path.join(root, name)), "shard")
            elif suffix == ".parquet" and _image_parquet(Path(root, name)):
                yield Unit(_norm(os.path.join(root, name)), "parquet")


def _image_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet" and image_column(path) is not None


def _list(path: Path) -> Iterator[Unit]:
    base = path.parent
    for entry in _list_entries(path):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        p = Path(entry)
        p = p if p.is_absolute() else base / p
        kind = "shard" if p.suffix.lower() in SHARD_SUFFIXES else "file"
        yield Unit(_norm(p), "parquet" if _image_parquet(p) else kind)


def _list_entries(path: Path) -> Generator[str, None, None]:
    if path.suffix.lower() != ".parquet":
        try:
            with path.open(encoding="utf-8") as fh:
                yield from fh
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"{path}: cannot read the path list ({exc})") from exc
        return
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise SourceError(f"{path}: not a readable Parquet file ({exc})") from exc
    names = pf.schema_arrow.names
    column = next((c for c in PATH_COLUMNS if c in names), None)
    if column is None:
        raise SourceError(
            f"{path}: a Parquet path list needs a column named one of {', '.join(PATH_COLUMNS)}"
        )
    for batch in pf.iter_batches(columns=[column], batch_size=8192):
        yield from (v for v in batch.column(0).to_pylist() if isinstance(v, str))


def read_beside(path: str) -> tuple[bytes | None, dict[str, Any] | None, str | None]:
    """A loose file's C2PA sidecar (IMAGE.c2pa) and img2dataset metadata (IMAGE.json)."""
    stem = os.path.splitext(path)[0]
    sidecar = meta = problem = None
    try:
        sidecar = _beside(stem + ".c2pa", DEFAULT_MAX_BYTES)
        raw = _beside(stem + ".json", MAX_META_BYTES)
        if raw is not None:
            meta, problem = parse_meta(raw)
    except FileTooLarge:
        problem = "a file beside the image (its .c2pa or .json) is too large to read"
    except OSError as exc:
        problem = f"the files beside the image could not be read ({exc.strerror or exc})"
    return sidecar, meta, problem


def _beside(path: str, limit: int) -> bytes | None:
    try:
        return read_regular(path, limit)
    except FileNotFoundError:
        return None
