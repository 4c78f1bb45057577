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
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from guard.errors import GuardError, OutputExistsError
from guard.scan.report import iter_rows

COLUMNS = ["path", "shard", "key", "sha256", "decision"]


@dataclass
class CopyResult:
    copied: int = 0
    already_there: int = 0
    skipped: list[str] = field(default_factory=list)  # "path: why"


def allowed_rows(report: str | os.PathLike[str]):
    return (r for r in iter_rows(report, COLUMNS) if r["decision"] == "allowed")


def keep_list(report: str | os.PathLike[str], out: str | os.PathLike[str]) -> int:
    """Write the allowed images' paths (SHARD#MEMBER for shard samples), one per line."""
    from guard.atomic_write import save_atomic

    paths = [r["path"] for r in allowed_rows(report)]
    save_atomic(out, "".join(p + "\n" for p in paths).encode("utf-8"), force=True)
    return len(paths)


def copy_clean(report: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> CopyResult:
    """Copy every allowed image into `out_dir`, keeping the data set's folder layout.

    Loose files keep their path relative to the deepest folder that holds all of them; shard
    samples go to a folder named after their shard (without `.tar`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = list(allowed_rows(report))
    sources = [r["shard"] or r["path"] for r in rows]
    root = os.path.commonpath([os.path.dirname(s) for s in sources]) if sources else ""
    result = CopyResult()
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["shard"]:
            by_shard[row["shard"]].append(row)
            continue
        _write(out / os.path.relpath(row["path"], root), _read(row["path"]), row, result)
    for shard, members in by_shard.items():
        folder = out / os.path.relpath(shard, root).removesuffix(".tar")
        wanted = {r["path"].split("#", 1)[1]: r for r in members}
        found = set()
        try:
            with tarfile.open(shard, "r:*") as tar:
                for member in tar:
                    row = wanted.get(member.name)
                    if row is None or not member.isreg() or member.name in found:
                        continue
                    found.add(member.name)
                    fh = tar.extractfile(member)
                    data = fh.read() if fh is not None else None
                    _write(folder / _safe(member.name), data, row, result)
        except (OSError, tarfile.TarError, EOFError) as exc:
            result.skipped.append(f"{shard}: the shard could not be read ({exc})")
        for name in wanted.keys() - found:
            result.skipped.append(f"{wanted[name]['path']}: no longer in its shard")
    return result


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _safe(member: str) -> Path:
    """A member name as a relative path that cannot leave its folder ('..', absolute names)."""
    parts = [p for p in member.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return Path(*parts) if parts else Path("_")


def _write(target: Path, data: bytes | None, row: dict, result: CopyResult) -> None:
    from guard.atomic_write import save_atomic

    if data is None:
        result.skipped.append(f"{row['path']}: could not be read")
        return
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        result.skipped.append(f"{row['path']}: changed since it was scanned; not copied")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_atomic(target, data)
        result.copied += 1
    except OutputExistsError:
        if _read(str(target)) == data:
            result.already_there += 1
        else:
            result.skipped.append(f"{row['path']}: {target} exists with other content")
    except GuardError as exc:
        result.skipped.append(f"{row['path']}: {exc}")
