"""What a data set is made of: folders, path lists (text or Parquet) and WebDataset shards.

Sources yield *units*, the grain of resuming: a loose file, or a whole `.tar` shard. A unit
yields *items*, one per image. Nothing here decodes an image or writes anywhere; tar members
are read into memory one sample at a time and never extracted to disk.

WebDataset grouping follows the WebDataset convention (and Ray's `read_webdataset`): a
member's key is its path up to the first '.' of the file name, the rest is its suffix. The
members of one sample sit next to each other: `KEY.jpg`, `KEY.json` (img2dataset's metadata),
`KEY.txt`, optionally `KEY.c2pa` (a C2PA sidecar). Every image member becomes one item.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tarfile
import zlib
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from guard.errors import GuardError
from guard.media.formats import EXTENSIONS
from guard.media.safe_read import FileTooLarge, open_regular, read_regular
from guard.scan.unit_set import UnitSet

# Files that look like images but that guard cannot read still get a row (unverifiable), so
# a data set's unsupported files are never silently counted as clean.
OTHER_IMAGE_SUFFIXES = frozenset(
    {".gif", ".bmp", ".jxl", ".heic", ".heif", ".ico", ".jp2", ".ppm", ".pgm", ".pbm", ".svg"}
)
IMAGE_SUFFIXES = frozenset(EXTENSIONS) | OTHER_IMAGE_SUFFIXES
SHARD_SUFFIXES = (".tar",)
LIST_SUFFIXES = (".txt", ".lst", ".parquet")
PATH_COLUMNS = ("path", "file", "filename", "filepath", "image_path")
DEFAULT_MAX_BYTES = 256 << 20  # bigger files are unverifiable without being read
MAX_META_BYTES = 1 << 20
# what reading a damaged or truncated shard raises (zlib: a compressed one)
SHARD_ERRORS = (OSError, tarfile.TarError, EOFError, zlib.error)
MAX_SAMPLE_MEMBERS = 256  # members of one WebDataset sample (img2dataset writes 3 or 4)


NOT_UTF8 = (
    "the file name is not valid UTF-8 (shown here with its bytes escaped): a report cannot "
    "name it, so it was not read; rename it to scan it"
)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a name from the file system with undecodable bytes
        return False
    return True


def escaped(name: str) -> str:
    """A file name whose bytes are not UTF-8, as text a report can hold: b'\\xff' -> '\\xff'."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


class SourceError(GuardError):
    """A data set argument that is neither an image, a shard, a folder nor a path list."""


@dataclass
class Item:
    """One image to scan: a file on disk (read by the worker) or bytes from a shard."""

    path: str  # the report's identity: the file, or SHARD#MEMBER
    file: str | None = None
    data: bytes | None = field(default=None, repr=False)
    sidecar: bytes | None = field(default=None, repr=False)
    meta: dict[str, Any] | None = None
    shard: str | None = None
    key: str | None = None
    problem: str | None = None  # the source could not be read (truncated shard, bad .json)
    size: int | None = None  # bytes of a member that was too large to read


@dataclass(frozen=True, slots=True)
class Unit:
    """The grain of resuming: one loose file or one shard."""

    id: str
    kind: str  # "file" | "shard" | "unnamable" (a name that is not UTF-8; id is escaped)

    def items(self, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Item]:
        if self.kind == "file":
            yield Item(path=self.id, file=self.id)
        elif self.kind == "unnamable":
            yield Item(path=self.id, problem=NOT_UTF8)
        else:
            yield from read_shard(self.id, max_bytes)

    def count(self) -> int | None:
        """Images in the unit, when that is cheap to know (uncompressed shards: headers only)."""
        return count_shard(self.id) if self.kind == "shard" else 1


def _norm(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.fspath(path))


def units(datasets: Iterable[str | os.PathLike[str]]) -> Iterator[Unit]:
    """Every unit of every DATASET argument, in a stable order, each once."""
    seen = UnitSet()
    for arg in datasets:
        for unit in _units_of(Path(arg)):
            if not _is_utf8(unit.id):  # Parquet holds UTF-8 only: one such name must not stop it
                unit = Unit(escaped(unit.id), "unnamable")
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
        if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
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
    elif path.suffix.lower() in LIST_SUFFIXES:
        yield from _list(path)
    else:
        yield Unit(_norm(path), "file")  # an image, or a file the scan will call unreadable


def _walk(folder: Path) -> Iterator[Unit]:
    """Images and shards below `folder`, sorted; img2dataset's per-shard .parquet is skipped."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            suffix = os.path.splitext(name)[1].lower()
            if suffix in IMAGE_SUFFIXES:
                yield Unit(_norm(os.path.join(root, name)), "file")
            elif suffix in SHARD_SUFFIXES:
                yield Unit(_norm(os.path.join(root, name)), "shard")


def _list(path: Path) -> Iterator[Unit]:
    base = path.parent
    for entry in _list_entries(path):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        p = Path(entry)
        p = p if p.is_absolute() else base / p
        kind = "shard" if p.suffix.lower() in SHARD_SUFFIXES else "file"
        yield Unit(_norm(p), kind)


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


# ---- WebDataset shards ----------------------------------------------------------------------


_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def split_key(name: str) -> tuple[str | None, str]:
    """WebDataset's key/suffix split (the same pattern as webdataset and Ray's reader):
    'a/b.seg.png' -> ('a/b', 'seg.png'); a name without one ('README', '.x') is no sample."""
    match = _KEY.match(name)
    return (match.group(1), match.group(2)) if match else (None, "")


def member_path(shard: str, member: str) -> str:
    return f"{shard}#{member}"


def _is_image_suffix(suffix: str) -> bool:
    return "." + suffix.rsplit(".", 1)[-1].lower() in IMAGE_SUFFIXES


@contextlib.contextmanager
def open_shard(shard: str, mode: Literal["r:*", "r:"] = "r:*") -> Iterator[tarfile.TarFile]:
    """A shard as a tar archive, read through `safe_read` (a pipe named x.tar is refused)."""
    with open_regular(shard) as fh, tarfile.open(fileobj=fh, mode=mode) as tar:
        yield tar


def sample_members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, str, str]]:
    """(member, key, suffix) of every regular member that belongs to a sample, in tar order."""
    for member in tar:
        if member.isreg():
            key, suffix = split_key(member.name)
            if key is not None:
                yield member, key, suffix


def count_shard(shard: str) -> int | None:
    if not shard.endswith(".tar"):
        return None
    try:
        with open_shard(shard, "r:") as tar:  # uncompressed only: headers, no decompression
            return sum(1 for _, _, suffix in sample_members(tar) if _is_image_suffix(suffix))
    except SHARD_ERRORS:
        return None


def read_shard(shard: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Item]:
    """The images of one shard, sample by sample; a damaged shard ends with a problem item.

    A sample is held in memory until its last member (its .json may come after its image), so
    a sample is bounded: more than MAX_SAMPLE_MEMBERS members or twice the per-file limit in
    bytes (a hostile shard can name millions of members alike) becomes one unverifiable row,
    and its members are not read. So does every image of a sample split across the shard.
    """
    irregular = irregular_samples(shard, max_bytes)
    group_key: str | None = None
    group: list[tuple[str, str, tarfile.TarInfo, bytes | None]] = []
    held, overflow, reported = 0, False, set()

    def finish() -> Iterator[Item]:
        if overflow or irregular.get(group_key or "") == OVERSIZED:
            if group_key not in reported:  # once, however many runs the sample has
                reported.add(group_key)
                yield _oversized(shard, group_key or "", max_bytes)
        elif group_key in irregular:
            yield from _split(shard, group)
        elif group:
            yield from _sample(shard, group)

    try:
        with open_shard(shard) as tar:
            for member, key, suffix in sample_members(tar):
                if key != group_key:
                    yield from finish()
                    group, held, overflow = [], 0, False
                group_key = key
                if overflow or irregular.get(key) == OVERSIZED:
                    continue
                data = None
                if _held(member, suffix, max_bytes):
                    fh = tar.extractfile(member)
                    data = fh.read() if fh is not None else None
                group.append((key, suffix, member, data))
                held += len(data or b"")
                if len(group) > MAX_SAMPLE_MEMBERS or held > 2 * max_bytes:  # grew since
                    group, held, overflow = [], 0, True
    except SHARD_ERRORS as exc:
        yield from finish()
        yield Item(
            path=member_path(shard, ""),
            shard=shard,
            problem=f"the shard could not be read to the end ({type(exc).__name__}: {exc})",
        )
        return
    yield from finish()


def _held(member: tarfile.TarInfo, suffix: str, max_bytes: int) -> bool:
    """Whether a member is read into memory: images, .json and .c2pa, within their limits."""
    wanted = suffix in ("json", "c2pa") or _is_image_suffix(suffix)
    return wanted and member.size <= (MAX_META_BYTES if suffix == "json" else max_bytes)


SPLIT, OVERSIZED = "split", "oversized"


def irregular_samples(shard: str, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, str]:
    """Samples no WebDataset reader can be trusted with, from the headers alone: key -> why.

    SPLIT: the members are not next to each other. Readers (guard's and Ray's) take each run
    as a sample, so an image could be read apart from the .json that opts it out.
    OVERSIZED: more members or bytes than a sample may hold in memory (see read_shard).
    Such samples are unverifiable; Ray is not handed their shards.
    """
    runs: dict[str, int] = {}
    members: dict[str, int] = {}
    held: dict[str, int] = {}
    last = None
    try:
        with open_shard(shard) as tar:
            for member, key, suffix in sample_members(tar):
                if key != last:
                    runs[key] = runs.get(key, 0) + 1
                    last = key
                members[key] = members.get(key, 0) + 1
                if _held(member, suffix, max_bytes):
                    held[key] = held.get(key, 0) + member.size
    except SHARD_ERRORS:
        pass  # a damaged shard: read_shard says so
    out = {k: SPLIT for k, n in runs.items() if n > 1}
    for key, n in members.items():
        if n > MAX_SAMPLE_MEMBERS or held.get(key, 0) > 2 * max_bytes:
            out[key] = OVERSIZED
    return out


def _split(
    shard: str, group: list[tuple[str, str, tarfile.TarInfo, bytes | None]]
) -> Iterator[Item]:
    words = "the sample's members are not together in the shard: it cannot be read as one sample"
    for key, suffix, member, _ in group:
        if _is_image_suffix(suffix):
            name = escaped(member.name)
            yield Item(path=member_path(shard, name), shard=shard, key=escaped(key), problem=words)


def _oversized(shard: str, key: str, max_bytes: int) -> Item:
    words = (
        f"the sample {escaped(key)!r} has more than {MAX_SAMPLE_MEMBERS} members or "
        f"{2 * max_bytes >> 20} MB: not read (every image of it is in this one row)"
    )
    name = escaped(key)
    return Item(path=member_path(shard, name + ".*"), shard=shard, key=name, problem=words)


def _sample(
    shard: str, group: list[tuple[str, str, tarfile.TarInfo, bytes | None]]
) -> Iterator[Item]:
    by_suffix = {suffix: (member, data) for _, suffix, member, data in group}
    meta, problem = None, None
    if "json" in by_suffix:
        meta, problem = parse_meta(by_suffix["json"][1])
    sidecar = by_suffix.get("c2pa", (None, None))[1]
    for key, suffix, member, data in group:
        if not _is_image_suffix(suffix):
            continue
        if not _is_utf8(member.name):
            yield Item(
                path=member_path(shard, escaped(member.name)),
                shard=shard,
                key=escaped(key),
                problem=NOT_UTF8,
            )
            continue
        yield Item(
            path=member_path(shard, member.name),
            data=data,
            sidecar=sidecar,
            meta=meta,
            shard=shard,
            key=key,
            problem=problem,
            size=member.size if data is None else None,
        )


def parse_meta(raw: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    """A sample's .json metadata, or the reason it cannot be used (too large, not JSON)."""
    if raw is None or len(raw) > MAX_META_BYTES:
        return None, "the sample's .json metadata is too large to read"
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None, "the sample's .json metadata is not valid JSON"
    if not isinstance(value, dict):  # not img2dataset's (an annotation list, say): not ours
        return None, None
    return value, None


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
