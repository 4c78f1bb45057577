"""Reading a ledger without writing one byte of it or of its folder: `Ledger(path, read_only=True)`.

SQLite reads a WAL database with `mode=ro` only where its -wal and -shm files exist or can be
made, and it makes them itself when the folder lets it (as root: always); `immutable=1` needs
neither, but skips all locking and change detection, so it is right only while nothing writes
the file (https://sqlite.org/wal.html#readonly, https://sqlite.org/uri.html#uriimmutable). A
ledger that another process may still write gets whichever is right at each read:

- a -wal exists: a writer has the ledger open (or left it so). `mode=ro` through the writer's
  own -wal and -shm, under SQLite's locking, sees every committed record; the connection is kept.
- no -wal: the database file holds the whole ledger. One `immutable=1` connection per read, under
  the shared lock SQLite's readers take on the database file, and the rows are kept only if no
  -wal appeared meanwhile. A writer that starts during the read creates the -wal and cannot
  remove it while the lock is held (SQLite deletes it only under an exclusive lock), so a read
  that could have raced a checkpoint is always noticed, and done again through `mode=ro`.
- a ledger not in WAL mode (a rollback journal): `mode=ro`, which creates nothing there.

The lock is a Linux open-file-description lock (F_OFD_SETLK): a POSIX lock would be dropped
when SQLite closes any of its own descriptors of the file in this process. Where there is none
(macOS, Windows), every read is `mode=ro`, which creates the -wal and -shm when the folder lets it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import struct
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from guard.ledger.record import LedgerError

try:
    import fcntl

    _OFD_SETLK: int | None = fcntl.F_OFD_SETLK
except (ImportError, AttributeError):  # not Linux
    _OFD_SETLK = None

# SQLite's lock bytes in the database file (os_unix.c): a reader holds a read lock on the shared
# range, taken through the pending byte; a writer needs them all to delete the -wal.
PENDING_BYTE = 0x40000000
SHARED_FIRST = PENDING_BYTE + 2
SHARED_SIZE = 510
LOCK_WAIT_S = 30.0  # as long as a writing Ledger waits for a lock


class ReadOnlyLedger:
    """The reads of one read-only Ledger; `required` are the columns its queries name."""

    def __init__(self, path: Path, required: Iterable[str]) -> None:
        self.path = path
        self._uri = path.absolute().as_uri()
        self._wal = Path(f"{path}-wal")
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise LedgerError(
                f"{path}: no ledger there, and a read-only server creates none; check --ledger "
                "or GUARD_LEDGER",
                reason="there is no ledger at the configured path",
            ) from None
        except OSError as exc:
            raise LedgerError(
                f"{path}: cannot read the ledger ({exc.strerror or exc})",
                reason=f"the ledger cannot be read ({exc.strerror or exc})",
            ) from None
        self._live: sqlite3.Connection | None = None
        self.columns: frozenset[str] = frozenset()
        try:
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                raise LedgerError(f"{path}: not a file", reason="the ledger is not a file")
            if _OFD_SETLK is None or os.pread(self._fd, 2, 18) != b"\x02\x02":
                self._live = self._connect("mode=ro")  # see the module's docstring
            columns = {row[1] for row in self.rows("PRAGMA table_info(records)")}
            self.columns = frozenset(columns)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise LedgerError(
                f"{path}: not a usable guard ledger ({exc})",
                reason=f"not a usable guard ledger ({exc})",
            ) from None
        except LedgerError:
            self.close()
            raise
        missing = [c for c in required if c not in columns]
        if missing:
            self.close()
            why = (
                "not a guard ledger"
                if not columns
                else f"written by an older guard (no {missing[0]})"
            )
            raise LedgerError(
                f"{path}: {why}; a read-only ledger is never upgraded (open it once without "
                "--read-only, e.g. `guard ledger export`, to upgrade it)",
                reason=why,
            )

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            if self._live is None and not self._wal.exists():
                with self._shared_lock():
                    if not self._wal.exists():
                        db = self._connect("mode=ro&immutable=1")
                        try:
                            rows = db.execute(sql, args).fetchall()
                        finally:
                            db.close()
                        if not self._wal.exists():
                            return rows
            if self._live is None:  # a writer is here: read along with it from now on
                self._live = self._connect("mode=ro")
            return self._live.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise LedgerError(
                f"{self.path}: cannot read the ledger ({exc})",
                reason=f"the ledger cannot be read ({exc})",
            ) from exc

    def close(self) -> None:
        if self._live is not None:
            self._live.close()
            self._live = None
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _connect(self, mode: str) -> sqlite3.Connection:
        db = sqlite3.connect(f"{self._uri}?{mode}", uri=True, timeout=LOCK_WAIT_S)
        db.row_factory = sqlite3.Row
        return db

    @contextlib.contextmanager
    def _shared_lock(self) -> Iterator[None]:
        """A reader's lock on the database file, as SQLite takes it: through the pending byte,
        so a writer that is waiting for its exclusive lock goes first."""
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            if self._lock(fcntl.F_RDLCK, PENDING_BYTE, 1):
                got = self._lock(fcntl.F_RDLCK, SHARED_FIRST, SHARED_SIZE)
                self._lock(fcntl.F_UNLCK, PENDING_BYTE, 1)
                if got:
                    break
            if time.monotonic() > deadline:
                raise LedgerError(
                    f"{self.path}: a writer kept the ledger locked for {LOCK_WAIT_S:.0f} s",
                    reason="the ledger stayed locked by a writer",
                )
            time.sleep(0.01)
        try:
            yield
        finally:
            self._lock(fcntl.F_UNLCK, SHARED_FIRST, SHARED_SIZE)

    def _lock(self, kind: int, start: int, length: int) -> bool:
        assert _OFD_SETLK is not None
        flock = struct.pack("hhqqi4x", kind, os.SEEK_SET, start, length, 0)
        try:
            fcntl.fcntl(self._fd, _OFD_SETLK, flock)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True
