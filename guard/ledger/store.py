"""Watermark ID → what guard signed. Knows nothing of images.

The ledger is what makes provenance survive lost metadata: a verifier who finds guard's
watermark in a stripped copy looks its ID up here and gets the original manifest back.
SQLite in WAL mode with synchronous=FULL: a committed record survives a crash or a kill.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from guard import config
from guard.ledger.readonly import ReadOnlyLedger
from guard.ledger.record import LedgerError, Record, normalise_id

# Column -> declaration, in table order. An existing ledger missing a column gets it added
# (ALTER TABLE ADD COLUMN) when opened, so every ledger file ever written stays readable.
COLUMNS: dict[str, str] = {
    "watermark_id": "TEXT PRIMARY KEY",
    "created_at": "TEXT NOT NULL",
    "signer": "TEXT",
    "sha256": "TEXT",
    "file_name": "TEXT",
    "manifest_label": "TEXT",
    "manifest": "BLOB",
    "summary": "TEXT NOT NULL DEFAULT '{}'",
    "thumbnail": "BLOB",
    "fingerprint": "BLOB",  # a content descriptor of the marked picture (watermark v2)
    "origin": "TEXT NOT NULL DEFAULT 'local'",  # local: signed here; imported: from a JSONL file
    "verified": "INTEGER",  # imported records: 1 if the stored manifest verified on import
    "state": "TEXT NOT NULL DEFAULT 'committed'",  # pending until the file is in place
    "pending_path": "TEXT",  # where the pending file is being written
    "pending_pid": "INTEGER",  # the writing process
    # the soft-binding algorithm the stored manifest binds the watermark ID under, read from the
    # manifest when the record is stored (NULL in rows stored before it: read again on lookup)
    "binding_alg": "TEXT",
}
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records (\n    "
    + ",\n    ".join(f"{k} {v}" for k, v in COLUMNS.items())
    + "\n);\nCREATE INDEX IF NOT EXISTS records_sha256 ON records(sha256);\n"
    # the soft-binding resolution API serves manifests by their label (guard serve)
    + "CREATE INDEX IF NOT EXISTS records_manifest ON records(manifest_label);\n"
)
RECORD_COLUMNS = (
    "watermark_id",
    "created_at",
    "signer",
    "sha256",
    "file_name",
    "manifest_label",
    "manifest",
    "summary",
    "thumbnail",
    "fingerprint",
    "origin",
    "verified",
)
LEDGER_VERSION = 3  # the schema this guard writes; older ledgers are migrated on first open


class Ledger:
    """`read_only`: open an existing ledger without writing it or its folder, ever (no -wal, no
    migration, no settled pending rows: guard.ledger.readonly); a missing one is an error."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, read_only: bool = False
    ) -> None:
        self.path = Path(path) if path else config.ledger_path()
        self.read_only = read_only
        self._reader: ReadOnlyLedger | None = None
        if read_only:
            self._reader = ReadOnlyLedger(self.path, (*RECORD_COLUMNS, "state"))
            self._bound = "binding_alg" if "binding_alg" in self._reader.columns else "NULL"
            return
        self._bound = "binding_alg"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._migrate()
            self._reconcile()
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"{self.path}: not a usable guard ledger ({exc}); point --ledger or GUARD_LEDGER "
                "at another file",
                reason=f"not a usable guard ledger ({exc})",
            ) from exc
        except OSError as exc:
            raise LedgerError(
                f"{exc.filename or self.path}: cannot open the ledger ({exc.strerror or exc}); "
                "point --ledger or GUARD_LEDGER at a folder you can write to",
                reason=f"the ledger cannot be opened ({exc.strerror or exc})",
            ) from exc

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        else:
            self._db.close()

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Every read goes through here: a read-only ledger reads as guard.ledger.readonly says."""
        if self._reader is not None:
            return self._reader.rows(sql, args)
        return self._db.execute(sql, args).fetchall()

    def _writable(self) -> sqlite3.Connection:
        if self._reader is not None:
            raise LedgerError(
                f"{self.path}: opened read-only", reason="the ledger is opened read-only"
            )
        return self._db

    # -- schema and crash recovery ---------------------------------------------------------------

    def _migrate(self) -> None:
        """Add columns a newer guard knows to a ledger written by an older one; lower-case IDs.

        Once per ledger file: `user_version` records that it was done, so opening a ledger of
        100,000 records does not scan them every time.
        """
        if self._db.execute("PRAGMA user_version").fetchone()[0] >= LEDGER_VERSION:
            return
        have = {row[1] for row in self._db.execute("PRAGMA table_info(records)")}
        with self._db:
            for name, decl in COLUMNS.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE records ADD COLUMN {name} {decl}")
            # IDs once stored upper-case could never be found; fold them (a clash keeps the first)
            self._db.execute(
                "UPDATE OR IGNORE records SET watermark_id = lower(watermark_id) "
                "WHERE watermark_id != lower(watermark_id)"
            )
            # every open looks for pending records: without this index that is a full scan
            # (1.5 s at 100,000 records, measured by benchmarks/bench_serve.py)
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS records_pending ON records(state) "
                "WHERE state = 'pending'"
            )
            self._db.execute(f"PRAGMA user_version = {LEDGER_VERSION}")

    def _reconcile(self) -> None:
        """Settle records left pending by a writer that died between recording and saving.

        A pending record whose file is in place with the recorded hash is committed; one whose
        file never appeared is removed, so the ledger never points at a file that was not
        written. Records of writers still running are left alone.
        """
        from guard.media.atomic_write import pid_alive

        rows = self._db.execute(
            "SELECT watermark_id, sha256, pending_path, pending_pid FROM records "
            "WHERE state = 'pending'"
        ).fetchall()
        for row in rows:
            if row["pending_pid"] and pid_alive(row["pending_pid"]):
                continue
            path = Path(row["pending_path"]) if row["pending_path"] else None
            if path is not None and _sha256(path) == row["sha256"]:
                self._settle(row["watermark_id"])
            else:
                self.remove(row["watermark_id"])

    def _settle(self, watermark_id: str) -> None:
        with self._db:
            self._db.execute(
                "UPDATE records SET state = 'committed', pending_path = NULL, pending_pid = NULL "
                "WHERE watermark_id = ?",
                (watermark_id,),
            )

    # -- records -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._rows("SELECT COUNT(*) FROM records WHERE state = 'committed'")[0][0]

    def unverified_count(self) -> int:
        """Imported records kept although their manifest did not verify."""
        return self._rows(
            "SELECT COUNT(*) FROM records WHERE verified = 0 AND state = 'committed'"
        )[0][0]

    def add(
        self,
        record: Record,
        *,
        replace: bool = False,
        pending: str | os.PathLike[str] | None = None,
    ) -> bool:
        """False when the ID is already taken (and replace is off): IDs are 64 random bits,
        so a clash means the same image was recorded twice, not a collision.

        `pending`: the path the image is about to be saved to. The record stays invisible
        until `commit`; if the process dies first, the next open settles it (see _reconcile).
        """
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self._writable():
            cur = self._insert(verb, record, pending)
        return cur.rowcount == 1

    def commit(self, record: Record) -> None:
        """The file of a pending record is in place: make the record visible."""
        with self._writable():
            cur = self._db.execute(
                "UPDATE records SET state = 'committed', pending_path = NULL, pending_pid = NULL "
                "WHERE watermark_id = ?",
                (record.watermark_id,),
            )
            if cur.rowcount == 0:  # settled away by another process meanwhile: record it again
                self._insert("INSERT OR REPLACE", record, None)

    def _insert(self, verb: str, record: Record, pending: str | os.PathLike[str] | None):
        values = {
            "watermark_id": record.watermark_id,
            "created_at": record.created_at,
            "signer": record.signer,
            "sha256": record.sha256,
            "file_name": record.file_name,
            "manifest_label": record.manifest_label,
            "manifest": record.manifest,
            "summary": json.dumps(record.summary),
            "thumbnail": record.thumbnail,
            "fingerprint": record.fingerprint,
            "origin": record.origin,
            "verified": None if record.verified is None else int(record.verified),
            "state": "pending" if pending is not None else "committed",
            "pending_path": str(Path(pending).absolute()) if pending is not None else None,
            "pending_pid": os.getpid() if pending is not None else None,
            "binding_alg": binding_alg(record.manifest),
        }
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        return self._db.execute(
            f"{verb} INTO records ({names}) VALUES ({marks})", tuple(values.values())
        )

    def get(self, watermark_id: str, *, alg: str | None = None) -> Record | None:
        """`alg`: only a record whose stored manifest binds the ID under that soft-binding
        algorithm (a query for org.guard.watermark.v1 never finds a record signed with v2)."""
        if alg is None:
            return self._one("watermark_id", normalise_id(watermark_id))
        rows = self._rows(
            f"SELECT {', '.join(RECORD_COLUMNS)}, {self._bound} AS bound FROM records "
            "WHERE watermark_id = ? AND state = 'committed' LIMIT 1",
            (normalise_id(watermark_id),),
        )
        if not rows or (rows[0]["bound"] or binding_alg(rows[0]["manifest"])) != alg:
            return None
        return self._record(rows[0])

    def by_sha256(self, sha256: str) -> Record | None:
        return self._one("sha256", sha256.lower())

    def by_manifest_label(self, label: str) -> Record | None:
        """The record whose stored manifest store has this active manifest (urn:c2pa:…)."""
        return self._one("manifest_label", label)

    def _one(self, column: str, value: str) -> Record | None:
        rows = self._rows(
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM records "
            f"WHERE {column} = ? AND state = 'committed' LIMIT 1",
            (value,),
        )
        return self._record(rows[0]) if rows else None

    def remove(self, watermark_id: str) -> None:
        with self._writable():
            self._db.execute(
                "DELETE FROM records WHERE watermark_id = ?", (normalise_id(watermark_id),)
            )

    def __iter__(self) -> Iterator[Record]:
        sql = (
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM records WHERE state = 'committed' "
            "ORDER BY created_at"
        )
        # read-only: one snapshot read (guard.ledger.readonly), so every row is held at once
        rows = self._rows(sql) if self._reader is not None else self._db.execute(sql)
        for row in rows:
            yield self._record(row)

    @staticmethod
    def _record(row: sqlite3.Row) -> Record:
        data = {k: row[k] for k in RECORD_COLUMNS}
        data["summary"] = json.loads(data["summary"] or "{}")
        data["verified"] = None if data["verified"] is None else bool(data["verified"])
        data["origin"] = data["origin"] or "local"
        return Record(**data)

    # -- moving records between machines ------------------------------------------------------

    def export(self, path: str | os.PathLike[str]) -> int:
        """JSON Lines, one record per line: diffable, mergeable, readable without guard."""
        from guard.media.atomic_write import save_atomic

        lines = [json.dumps(r.to_json(), sort_keys=True) for r in self]
        save_atomic(path, ("\n".join(lines) + "\n" if lines else "").encode(), force=True)
        return len(lines)

    def import_(
        self,
        path: str | os.PathLike[str],
        *,
        keep_unverified: bool = False,
        check: Any = None,
    ) -> tuple[int, int]:
        """Returns (added, already present). All or nothing: every line is validated and every
        stored manifest checked before one transaction adds them. Existing records are never
        overwritten. A record whose manifest does not verify (or does not bind its ID) is
        refused, or with `keep_unverified` stored flagged as unverified."""
        from guard.ledger.schema import read_export

        if check is None:
            from guard.ledger.schema import check_manifest as check
        records = read_export(path)
        refused = []
        for n, record in records:
            problem = check(record)
            record.origin, record.verified = "imported", problem is None
            if problem is not None and not keep_unverified:
                refused.append(f"{path}:{n}: {problem}")
        if refused:
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise LedgerError(
                f"{refused[0]}{more}; nothing was imported (--keep-unverified imports such "
                "records flagged as unverified)"
            )
        added = skipped = 0
        self._writable().execute("BEGIN IMMEDIATE")
        try:
            for _, record in records:
                if self._insert("INSERT OR IGNORE", record, None).rowcount == 1:
                    added += 1
                else:
                    skipped += 1
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return added, skipped


def binding_alg(manifest: bytes | None) -> str | None:
    """The algorithm of the watermark soft binding in a manifest store's active manifest (its
    c2pa.soft-binding assertion; the fingerprint's is not it), None without one. Reading a store
    takes about 2 ms: answers are kept by the store's digest, for rows stored before the column."""
    if not manifest:
        return None
    key = hashlib.blake2b(manifest, digest_size=16).digest()
    with _BOUND_LOCK:
        if key in _BOUND:
            _BOUND.move_to_end(key)
            return _BOUND[key]
    from guard.provenance import c2pa_io

    alg = (c2pa_io.read_store(manifest, trust_pem=None).soft_binding or {}).get("alg")
    with _BOUND_LOCK:
        _BOUND[key] = alg
        while len(_BOUND) > 4096:
            _BOUND.popitem(last=False)
    return alg


_BOUND: OrderedDict[bytes, str | None] = OrderedDict()
_BOUND_LOCK = threading.Lock()


def _sha256(path: Path) -> str | None:
    import hashlib

    try:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None
