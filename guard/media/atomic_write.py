"""The one atomic writer: a file appears complete or not at all, and never replaces another
without `force`. Every image and sidecar guard publishes, and every file its commands export,
is written here.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from guard.errors import ImageInputError, OutputExistsError, OutputWriteError


def save_atomic(path: str | os.PathLike[str], data: bytes, *, force: bool = False) -> Path:
    """Write all-or-nothing: a crash leaves either no file or the complete one, never a torn file.

    Without `force`, an existing file is never replaced, even if it appears during the write
    (the final step is a hard link, which fails if the name exists). A failed write (read-only
    folder, full disk) raises OutputWriteError naming the path. The temp file's name carries the
    writer's PID, so a temp file left by a killed writer is removed by the next save there.
    """
    with atomic_file(path, force=force) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """`save_atomic` for writers that stream into a file name of their own (a Parquet writer
    adding row groups): write the yielded temp path; when the block ends, it becomes `path`,
    with the same rules. An OSError in the block becomes OutputWriteError naming `path`."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ImageInputError(f"{target}: the folder {folder} does not exist; create it first")
    if target.exists() and not force:
        raise OutputExistsError(f"{target}: already exists; pass --force to overwrite it")
    _remove_stale_temps(folder)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.name}.guard{os.getpid()}.", suffix=".tmp", dir=folder
        )
        os.close(fd)
    except OSError as exc:
        raise _write_error(target, exc) from exc
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError as exc:
                raise OutputExistsError(
                    f"{target}: already exists; pass --force to overwrite it"
                ) from exc
            except OSError:  # file systems without hard links
                if target.exists():
                    raise OutputExistsError(
                        f"{target}: already exists; pass --force to overwrite it"
                    ) from None
                os.replace(tmp, target)
    except OSError as exc:
        raise _write_error(target, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _fsync_dir(folder)


def make_folder(folder: str | os.PathLike[str]) -> Path:
    """Create an output's folder, parents included: `-o new/x.png` and `--out-dir new/` work
    alike in every command, while the writer above still refuses a folder nobody created.
    A folder that cannot be made is one OutputWriteError naming it."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputWriteError(f"{path}: cannot create this folder ({reason})") from exc
    return path


def _write_error(target: Path, exc: OSError) -> OutputWriteError:
    reason = exc.strerror or str(exc)
    return OutputWriteError(f"{target}: cannot be written ({reason}); nothing was saved")


_TEMP = re.compile(r"^\..+\.guard(\d+)\.[A-Za-z0-9_]+\.tmp$")


_SWEPT: set[Path] = set()


def _remove_stale_temps(folder: Path) -> None:
    """Temp files of writers that are no longer running (killed mid-save) are garbage.

    Once per folder per process: a dead writer's leftovers are there before this process starts
    writing, and listing the folder for every file would make big batches quadratic.
    """
    key = folder.resolve()
    if key in _SWEPT:
        return
    _SWEPT.add(key)
    try:
        names = [p for p in folder.iterdir() if p.name.endswith(".tmp") and ".guard" in p.name]
    except OSError:
        return
    for p in names:
        m = _TEMP.match(p.name)
        if m and not pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                p.unlink()


def pid_alive(pid: int) -> bool:
    """Whether a process (a writer that left a temp file or a pending record) still runs."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
