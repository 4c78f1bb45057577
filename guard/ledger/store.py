"""Watermark ID → what guard signed. Knows nothing of images.

The ledger is what makes provenance survive lost metadata: a verifier who finds guard's
watermark in a stripped copy looks its ID up here and gets the original manifest back.

`Ledger` holds the record logic once (the pending → commit protocol, lookups, import and export);
where the records live is a backend: a SQLite file (guard.ledger.sqlite, the embedded default)
or a PostgreSQL database that many writers and servers share (guard.ledger.postgres).
`config.ledger_location` tells which from what --ledger or GUARD_LEDGER says.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from guard import config
from guard.ledger.record import LedgerError, Record, normalise_id
from guard.ledger.table import (
    COLUMNS,
    HOST,
    LEDGER_VERSION,
    RECORD_COLUMNS,
    Backend,
    record_from_row,
    row_values,
    select_list,
)

__all__ = ["COLUMNS", "LEDGER_VERSION", "RECORD_COLUMNS", "Ledger", "binding_alg"]

_SETTLED = "state = 'committed', pending_path = NULL, pending_pid = NULL, pending_host = NULL"


class Ledger:
    """`path`: a SQLite file or a postgresql:// URL (default: GUARD_LEDGER, else the file in
    GUARD_HOME). `read_only`: never write the ledger, ever (SQLite: not even a -wal or its folder,
    guard.ledger.readonly; PostgreSQL: read-only transactions); no migration, no settled pending
    rows; a missing ledger is an error."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, read_only: bool = False
    ) -> None:
        self.path: config.LedgerLocation = config.ledger_location(path)
        self.read_only = read_only
        self._sql: Backend
        if isinstance(self.path, str):
            from guard.ledger.postgres import PostgresBackend

            self._sql = PostgresBackend(self.path, read_only=read_only)
        else:
            from guard.ledger.sqlite import SQLiteBackend

            self._sql = SQLiteBackend(self.path, read_only=read_only)
        self._select = select_list(self._sql.columns)
        if not read_only:
            self._reconcile()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sql.close()

    def _writable(self) -> Backend:
        if self.read_only:
            raise LedgerError(
                f"{self._sql.where}: opened read-only", reason="the ledger is opened read-only"
            )
        return self._sql

    # -- crash recovery ----------------------------------------------------------------------------

    def _reconcile(self) -> None:
        """Settle records left pending by a writer that died between recording and saving.

        A pending record whose file is in place with the recorded hash is committed; one whose
        file never appeared is removed, so the ledger never points at a file that was not
        written. Records of writers still running, or of other hosts (whose files this one
        cannot see), are left alone; each statement names the writer, so a record written again
        meanwhile is not touched.
        """
        from guard.media.atomic_write import pid_alive

        rows = self._sql.rows(
            "SELECT watermark_id, sha256, pending_path, pending_pid FROM records "
            "WHERE state = 'pending' AND (pending_host IS NULL OR pending_host = ?)",
            (HOST,),
        )
        for row in rows:
            if row["pending_pid"] and pid_alive(row["pending_pid"]):
                continue
            path = Path(row["pending_path"]) if row["pending_path"] else None
            settle = path is not None and _sha256(path) == row["sha256"]
            verb = f"UPDATE records SET {_SETTLED}" if settle else "DELETE FROM records"
            with self._sql.transaction() as run:
                run(
                    f"{verb} WHERE watermark_id = ? AND state = 'pending' "
                    "AND COALESCE(pending_pid, 0) = ?",
                    (row["watermark_id"], row["pending_pid"] or 0),
                )

    # -- records -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(
            self._sql.rows("SELECT COUNT(*) AS n FROM records WHERE state = 'committed'")[0]["n"]
        )

    def unverified_count(self) -> int:
        """Imported records kept although their manifest did not verify."""
        return int(
            self._sql.rows(
                "SELECT COUNT(*) AS n FROM records WHERE verified = 0 AND state = 'committed'"
            )[0]["n"]
        )

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
        with self._writable().transaction() as run:
            return _insert(run, record, pending, replace=replace) == 1

    def add_many(self, records: Iterable[Record]) -> int:
        """Store records in one transaction (bulk loads: add() commits, and syncs, each one);
        an ID already taken keeps its record. Returns how many were added."""
        with self._writable().transaction() as run:
            return sum(_insert(run, r, None, replace=False) for r in records)

    def commit(self, record: Record) -> None:
        """The file of a pending record is in place: make the record visible."""
        with self._writable().transaction() as run:
            if run(f"UPDATE records SET {_SETTLED} WHERE watermark_id = ?", (record.watermark_id,)):
                return
            _insert(run, record, None, replace=True)  # settled away meanwhile: record it again

    def get(self, watermark_id: str, *, alg: str | None = None) -> Record | None:
        """`alg`: only a record whose stored manifest binds the ID under that soft-binding
        algorithm (a query for org.guard.watermark.v1 never finds a record signed with v2)."""
        rows = self._lookup("watermark_id", normalise_id(watermark_id))
        if not rows:
            return None
        if alg is not None and (rows[0]["binding_alg"] or binding_alg(rows[0]["manifest"])) != alg:
            return None
        return record_from_row(rows[0])

    def by_sha256(self, sha256: str) -> Record | None:
        rows = self._lookup("sha256", sha256.lower())
        return record_from_row(rows[0]) if rows else None

    def by_manifest_label(self, label: str) -> Record | None:
        """The record whose stored manifest store has this active manifest (urn:c2pa:…)."""
        rows = self._lookup("manifest_label", label)
        return record_from_row(rows[0]) if rows else None

    def _lookup(self, column: str, value: str) -> list[Any]:
        return self._sql.rows(
            f"SELECT {self._select} FROM records WHERE {column} = ? AND state = 'committed' LIMIT 1",
            (value,),
        )

    def remove(self, watermark_id: str) -> None:
        with self._writable().transaction() as run:
            run("DELETE FROM records WHERE watermark_id = ?", (normalise_id(watermark_id),))

    def __iter__(self) -> Iterator[Record]:
        for record, _ in self._each():
            yield record

    def _each(self) -> Iterator[tuple[Record, str | None]]:
        """Every committed record with the binding algorithm its row keeps (None: not read yet)."""
        for row in self._sql.stream(
            f"SELECT {self._select} FROM records WHERE state = 'committed' "
            "ORDER BY created_at, watermark_id"
        ):
            yield record_from_row(row), row["binding_alg"]

    # -- moving records between machines ------------------------------------------------------

    def export(self, path: str | os.PathLike[str]) -> int:
        """JSON Lines, one record per line: diffable, mergeable, readable without guard."""
        import json

        from guard.media.atomic_write import save_atomic

        lines = [json.dumps(r.to_json(), sort_keys=True) for r in self]
        save_atomic(path, ("\n".join(lines) + "\n" if lines else "").encode(), force=True)
        return len(lines)

    def copy_from(self, source: Ledger) -> tuple[int, int]:
        """Every record of another ledger (SQLite ⇄ PostgreSQL), exactly as it is there: origin,
        verified and times kept, in one transaction, streamed. Returns (added, already present).

        For moving one's own records between one's own ledgers: nothing is checked again. A
        ledger from someone else is read through an export file (import_), which checks all."""
        added = seen = 0
        with self._writable().transaction() as run:
            for record, bound in source._each():
                seen += 1
                added += _insert(run, record, None, replace=False, bound=bound)
        return added, seen - added

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
        added = self.add_many(record for _, record in records)
        return added, len(records) - added


def _insert(
    run: Any,
    record: Record,
    pending: str | os.PathLike[str] | None,
    *,
    replace: bool,
    bound: str | None = None,
) -> int:
    """One row in, as both databases say it: an ID already taken is kept, or with `replace`
    overwritten in every column. `bound`: the binding algorithm, when the caller knows it."""
    values = row_values(record, pending, bound or binding_alg(record.manifest))
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    if replace:
        sets = ", ".join(f"{k} = excluded.{k}" for k in values if k != "watermark_id")
        conflict = f"DO UPDATE SET {sets}"
    else:
        conflict = "DO NOTHING"
    return int(
        run(
            f"INSERT INTO records ({names}) VALUES ({marks}) ON CONFLICT (watermark_id) {conflict}",
            tuple(values.values()),
        )
    )


def binding_alg(manifest: bytes | None) -> str | None:
    """The algorithm of the watermark soft binding in a manifest store's active manifest (its
    c2pa.soft-binding assertion; the fingerprint's is not it), None without one. Reading a store
    takes about 2 ms: answers are kept by the store's digest, for rows stored before the column."""
    if not manifest:
        return None
    manifest = bytes(manifest)
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
    try:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None
