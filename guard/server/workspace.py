"""The server's private folder for uploads and job outputs: 0700, one per process, removed on
shutdown; folders left by a server that was killed are removed by the next one."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

PREFIX = "guard-serve-"
_STALE = re.compile(rf"^{PREFIX}(\d+)-")


class Workspace:
    def __init__(self, parent: str | os.PathLike[str] | None = None) -> None:
        base = Path(parent or tempfile.gettempdir())
        _remove_stale(base)
        # mkdtemp creates the folder 0700: no other local user can list or read uploads
        self.root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))

    def new_dir(self, prefix: str = "r") -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=self.root))

    def remove(self, folder: Path) -> None:
        if folder.is_relative_to(self.root):
            shutil.rmtree(folder, ignore_errors=True)

    def scrub(self, text: str) -> str:
        """Never show a client where the server keeps its files."""
        return text.replace(str(self.root), "<upload>")

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _remove_stale(base: Path) -> None:
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            m = _STALE.match(entry.name)
            if m and entry.is_dir() and not _alive(int(m.group(1))):
                shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
