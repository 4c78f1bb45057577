"""The ledger in one SQLite file: guard's embedded default.

WAL mode with synchronous=FULL: a committed record survives a crash or a kill. A read-only
ledger reads through guard.ledger.readonly, which writes nothing at all.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from guard.ledger.readonly import ReadOnlyLedger
from guard.ledger.record import LedgerError
from guard.ledger.table import COLUMNS, INDEXES, LEDGER_VERSION, RECORD_COLUMNS, create_table

MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def is_sqlite_file(path: Path) -> bool:
    """Whether a file is a SQLite database (a ledger) rather than an export's JSON Lines."""
    try:
        with path.open("rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class SQLiteBackend:
    def __init__(self, path: Path, *, read_only: bool) -> None:
        self.where = str(path)
        self._reader: ReadOnlyLedger | None = None
        if read_only:
            self._reader = ReadOnlyLedger(path, (*RECORD_COLUMNS, "state"))
            self.columns = self._reader.columns
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute(create_table())
            self._migrate()
            for index in INDEXES:
                self.db.execute(index)
            self.columns = frozenset(
                row[1] for row in self.db.execute("PRAGMA table_info(records)")
            )
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"{path}: not a usable guard ledger ({exc}); point --ledger or GUARD_LEDGER "
                "at another file",
                reason=f"not a usable guard ledger ({exc})",
            ) from exc
        except OSError as exc:
            raise LedgerError(
                f"{exc.filename or path}: cannot open the ledger ({exc.strerror or exc}); "
                "point --ledger or GUARD_LEDGER at a folder you can write to",
                reason=f"the ledger cannot be opened ({exc.strerror or exc})",
            ) from exc

    def _migrate(self) -> None:
        """Add columns a newer guard knows to a ledger written by an older one; lower-case IDs.

        Once per ledger file: `user_version` records that it was done, so opening a ledger of
        100,000 records does not scan them every time.
        """
        if self.db.execute("PRAGMA user_version").fetchone()[0] >= LEDGER_VERSION:
            return
        have = {row[1] for row in self.db.execute("PRAGMA table_info(records)")}
        with self.transaction() as run:
            for name, decl in COLUMNS.items():
                if name not in have:
                    run(f"ALTER TABLE records ADD COLUMN {name} {decl}", ())
            # IDs once stored upper-case could never be found; fold them (a clash keeps the first)
            run(
                "UPDATE OR IGNORE records SET watermark_id = lower(watermark_id) "
                "WHERE watermark_id != lower(watermark_id)",
                (),
            )
            run(f"PRAGMA user_version = {LEDGER_VERSION}", ())

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Every read goes through here: a read-only ledger reads as guard.ledger.readonly says."""
        if self._reader is not None:
            return self._reader.rows(sql, args)
        return self.db.execute(sql, args).fetchall()

    def stream(self, sql: str) -> Iterator[Any]:
        # read-only: one snapshot read (guard.ledger.readonly), so every row is held at once
        return iter(self.rows(sql)) if self._reader is not None else self.db.execute(sql)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Callable[[str, tuple[Any, ...]], int]]:
        """BEGIN IMMEDIATE: the write lock is taken first, so two writers queue instead of one
        failing on the upgrade from a read lock."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield lambda sql, args: db.execute(sql, args).rowcount
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        else:
            self.db.close()
