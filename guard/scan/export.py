"""What a training pipeline takes away: the list of allowed images, or a copy of them.

Both read the finished report, so they work the same after the local and the Ray engine and
after a resumed scan. Only `allowed` rows are exported. A copy is made from the bytes that
were scanned: a file whose SHA-256 no longer matches its row (changed since the scan) is not
copied. Inputs are only ever read; outputs never replace an existing file.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from guard.errors import GuardError, OutputExistsError
from guard.media.safe_read import FileTooLarge, read_regular
from guard.scan.item import DEFAULT_MAX_BYTES, name_is_safe, shown
from guard.scan.report import iter_rows
from guard.scan.shards import SHARD_ERRORS, open_shard, sample_members, split_key

COLUMNS = ["path", "shard", "key", "sha256", "decision"]


# What travels with an image: its caption, the downloader's metadata and its C2PA sidecar (a
# clean subset without captions could not train a text-to-image model)
COMPANIONS = ("txt", "json", "c2pa")
MAX_COMPANION_BYTES = 16 << 20


@dataclass
class CopyResult:
    copied: int = 0
    already_there: int = 0
    companions: int = 0  # captions, .json and .c2pa files copied beside the images
    skipped: list[str] = field(default_factory=list)  # "path: why"


def allowed_rows(report: str | os.PathLike[str]):
    return (r for r in iter_rows(report, COLUMNS) if r["decision"] == "allowed")


def keep_list(report: str | os.PathLike[str], out: str | os.PathLike[str]) -> int:
    """Write the allowed images' paths (SHARD#MEMBER for shard samples), one per line: UTF-8,
    each line ending in LF, no quoting. A name that is not UTF-8 or holds a control character
    is never allowed by the scan; a report row that holds one anyway (a report is a file, and
    can be edited) stops the export, since one line must never be read as two paths."""
    from guard.media.atomic_write import atomic_file

    n = 0
    with atomic_file(out, force=True) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for row in allowed_rows(report):  # streamed: a list of millions is never in memory
            if not name_is_safe(row["path"]):
                raise GuardError(
                    f"{report}: an allowed row's path holds a control character or is not "
                    f"UTF-8 ({shown(row['path'])}); guard scan never writes such a row, so the "
                    "report was changed since; no keep-list was written"
                )
            fh.write(row["path"] + "\n")
            n += 1
    return n


def copy_clean(report: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> CopyResult:
    """Copy every allowed image into `out_dir`, keeping the data set's folder layout.

    Loose files keep their path relative to the deepest folder that holds all of them; shard
    samples go to a folder named after their shard (without `.tar`). Each image's companions
    (`COMPANIONS`: IMAGE.txt, .json, .c2pa beside a loose file; the same sample's members in a
    shard) are copied beside it, once the image itself is there.

    The report is streamed twice (the common folder, then the copies); only the rows of the
    shard being read are held, so a report of millions of rows copies in flat memory. A shard
    whose rows are not together in the report (Ray writes in no order) is read once per run.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = _common_folder(report)
    result = CopyResult()
    shard: str | None = None
    run: list[dict] = []  # allowed rows of `shard`, in report order
    for row in allowed_rows(report):
        if run and shard is not None and row["shard"] != shard:  # run: rows of `shard`
            _copy_run(shard, run, _shard_folder(out, shard, root), result)
            run = []
        shard = row["shard"]
        if shard:
            run.append(row)
        else:
            _copy_loose(row, out / os.path.relpath(row["path"], root), result)
    if run and shard is not None:
        _copy_run(shard, run, _shard_folder(out, shard, root), result)
    return result


def _common_folder(report: str | os.PathLike[str]) -> str:
    root: str | None = None
    for row in allowed_rows(report):
        folder = os.path.dirname(row["shard"] or row["path"])
        root = folder if root is None else os.path.commonpath([root, folder])
    return root or ""


def _shard_folder(out: Path, shard: str | None, root: str) -> Path:
    return out / os.path.splitext(os.path.relpath(shard or "", root))[0]


def _copy_run(shard: str, members: list[dict], folder: Path, result: CopyResult) -> None:
    if shard.endswith(".parquet"):
        _copy_from_parquet(shard, members, folder, result)
    else:
        _copy_from_shard(shard, members, folder, result)


def _copy_from_parquet(shard: str, members: list[dict], folder: Path, result: CopyResult) -> None:
    """img2dataset's Parquet output: each image with its caption (KEY.txt) and its row's other
    columns (KEY.json), as img2dataset's own files output lays them out."""
    import json

    from guard.scan.parquet_shards import rows

    wanted = {r["path"].split("#", 1)[1]: r for r in members}
    found: set[str] = set()
    try:
        for parquet_row in rows(shard, DEFAULT_MAX_BYTES):
            row = wanted.get(parquet_row.member)
            if row is None or parquet_row.member in found or parquet_row.problem:
                continue
            found.add(parquet_row.member)
            target = folder / _safe(parquet_row.member)
            if not _write(target, parquet_row.data, row, result):
                continue
            caption = parquet_row.meta.get("caption")
            if isinstance(caption, str):
                _write_companion(target.with_suffix(".txt"), caption.encode(), row, result)
            meta = json.dumps(parquet_row.meta, default=str, ensure_ascii=False).encode()
            _write_companion(target.with_suffix(".json"), meta, row, result)
    except Exception as exc:  # pyarrow's errors share no base class below Exception
        result.skipped.append(f"{shard}: the Parquet shard could not be read ({exc})")
    for name in wanted.keys() - found:
        result.skipped.append(f"{wanted[name]['path']}: no longer in its shard")


def _copy_loose(row: dict, target: Path, result: CopyResult) -> None:
    if _write(target, _read(row["path"]), row, result):
        stem = os.path.splitext(row["path"])[0]
        for suffix in COMPANIONS:
            if os.path.isfile(f"{stem}.{suffix}"):
                data = _read(f"{stem}.{suffix}")
                _write_companion(target.with_suffix(f".{suffix}"), data, row, result)


def _copy_from_shard(shard: str, members: list[dict], folder: Path, result: CopyResult) -> None:
    wanted = {r["path"].split("#", 1)[1]: r for r in members}
    wanted_keys = {split_key(name)[0] for name in wanted}
    found: set[str] = set()
    placed: dict[str, dict] = {}  # sample key -> the row of an image copied for it
    companions: list[tuple[str, str, bytes | None]] = []  # (key, member name, bytes)
    try:
        with open_shard(shard) as tar:
            for member, key, suffix in sample_members(tar):
                row = wanted.get(member.name)
                if row is not None and member.name not in found:
                    found.add(member.name)
                    if _write(folder / _safe(member.name), _member_bytes(tar, member), row, result):
                        placed[key] = row
                elif suffix in COMPANIONS and key in wanted_keys:
                    small = member.size <= MAX_COMPANION_BYTES
                    companions.append(
                        (key, member.name, _member_bytes(tar, member) if small else None)
                    )
    except SHARD_ERRORS as exc:
        result.skipped.append(f"{shard}: the shard could not be read ({exc})")
    for name in wanted.keys() - found:
        result.skipped.append(f"{wanted[name]['path']}: no longer in its shard")
    for key, name, data in companions:  # a caption whose image was not copied stays behind
        if key in placed:
            _write_companion(folder / _safe(name), data, placed[key], result)


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes | None:
    fh = tar.extractfile(member)
    return fh.read() if fh is not None else None


def _read(path: str) -> bytes | None:
    try:
        return read_regular(path, DEFAULT_MAX_BYTES)
    except (OSError, FileTooLarge):
        return None


def _safe(member: str) -> Path:
    """A member name as a relative path that cannot leave its folder ('..', absolute names)."""
    parts = [p for p in member.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return Path(*parts) if parts else Path("_")


def _write(target: Path, data: bytes | None, row: dict, result: CopyResult) -> bool:
    """Copy one image, checked against its scanned SHA-256; whether it is now in place."""
    if data is None:
        result.skipped.append(f"{row['path']}: could not be read")
        return False
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        result.skipped.append(f"{row['path']}: changed since it was scanned; not copied")
        return False
    outcome = _place(target, data)
    if outcome == "copied":
        result.copied += 1
    elif outcome == "there":
        result.already_there += 1
    else:
        result.skipped.append(f"{row['path']}: {outcome}")
    return outcome in ("copied", "there")


def _write_companion(target: Path, data: bytes | None, row: dict, result: CopyResult) -> None:
    outcome = "too large or unreadable" if data is None else _place(target, data)
    if outcome == "copied":
        result.companions += 1
    elif outcome != "there":
        result.skipped.append(f"{row['path']}: its {target.name}: {outcome}")


def _place(target: Path, data: bytes) -> str:
    """'copied', 'there' (the same bytes already are), or why not; never overwrites."""
    from guard.media.atomic_write import save_atomic

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_atomic(target, data)
        return "copied"
    except OutputExistsError:
        return "there" if _read(str(target)) == data else f"{target} exists with other content"
    except GuardError as exc:
        return str(exc)
