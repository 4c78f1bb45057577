"""The records table apart from any database: its columns, its version, and a Record ⇄ a row.

Both stores (SQLite in guard.ledger.sqlite, PostgreSQL in guard.ledger.postgres) create this one
table and read and write it through the functions here, so a record is the same bytes in both.

A record's thumbnail and fingerprint are also inside its manifest store: the c2pa.thumbnail
assertion holds the thumbnail's bytes, the fingerprint's soft binding holds the fingerprint in
base64. A row keeps where they are in the manifest instead of a second copy (about 26 KB of a
64 KB record); a record whose thumbnail or fingerprint is not in its manifest keeps the bytes.
"""

from __future__ import annotations

import base64
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from guard.ledger.record import Record

# Column -> declaration, in table order. An existing ledger missing a column gets it added
# (ALTER TABLE ADD COLUMN) when opened, so every ledger ever written stays readable. BLOB is
# PostgreSQL's BYTEA (declaration()).
COLUMNS: dict[str, str] = {
    "watermark_id": "TEXT PRIMARY KEY",
    "created_at": "TEXT NOT NULL",
    "signer": "TEXT",
    "sha256": "TEXT",
    "file_name": "TEXT",
    "manifest_label": "TEXT",
    "manifest": "BLOB",
    "summary": "TEXT NOT NULL DEFAULT '{}'",
    "thumbnail": "BLOB",  # NULL when thumbnail_at says where it is in the manifest
    "fingerprint": "BLOB",  # a content descriptor of the marked picture (watermark v2)
    "origin": "TEXT NOT NULL DEFAULT 'local'",  # local: signed here; imported: from a JSONL file
    "verified": "INTEGER",  # imported records: 1 if the stored manifest verified on import
    "state": "TEXT NOT NULL DEFAULT 'committed'",  # pending until the file is in place
    "pending_path": "TEXT",  # where the pending file is being written
    "pending_pid": "INTEGER",  # the writing process
    # the soft-binding algorithm the stored manifest binds the watermark ID under, read from the
    # manifest when the record is stored (NULL in rows stored before it: read again on lookup)
    "binding_alg": "TEXT",
    # the writing host: only that host can see whether a pending file arrived (a shared database
    # has writers on many hosts, whose process IDs mean nothing to each other)
    "pending_host": "TEXT",
    # the thumbnail's bytes within the manifest (offset, length), and the fingerprint's base64
    "thumbnail_at": "INTEGER",
    "thumbnail_len": "INTEGER",
    "fingerprint_at": "INTEGER",
    "fingerprint_len": "INTEGER",
}
INDEXES = (
    "CREATE INDEX IF NOT EXISTS records_sha256 ON records(sha256)",
    # the soft-binding resolution API serves manifests by their label (guard serve)
    "CREATE INDEX IF NOT EXISTS records_manifest ON records(manifest_label)",
    # every open looks for pending records: without this index that is a full scan
    # (1.5 s at 100,000 records, measured by benchmarks/bench_serve.py)
    "CREATE INDEX IF NOT EXISTS records_pending ON records(state) WHERE state = 'pending'",
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
# read too where the ledger has them; a read-only ledger of an older guard reads them as NULL
LATER_COLUMNS = (
    "binding_alg",
    "thumbnail_at",
    "thumbnail_len",
    "fingerprint_at",
    "fingerprint_len",
)
LEDGER_VERSION = 4  # the schema this guard writes; older ledgers are migrated on first open
HOST = socket.gethostname()


def declaration(name: str, blob: str = "BLOB") -> str:
    return COLUMNS[name].replace("BLOB", blob)


def create_table(blob: str = "BLOB") -> str:
    return (
        "CREATE TABLE IF NOT EXISTS records (\n    "
        + ",\n    ".join(f"{k} {declaration(k, blob)}" for k in COLUMNS)
        + "\n)"
    )


def select_list(have: frozenset[str]) -> str:
    """The columns a lookup reads, those a ledger lacks as NULL."""
    later = (c if c in have else f"NULL AS {c}" for c in LATER_COLUMNS)
    return ", ".join((*RECORD_COLUMNS, *later))


class Backend(Protocol):
    """What the Ledger needs of a database. SQL is written once, with `?` parameters."""

    where: str  # the file or database, as messages name it
    columns: frozenset[str]  # the columns the records table has

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]: ...

    def stream(self, sql: str) -> Iterator[Any]: ...

    def transaction(self) -> AbstractContextManager[Callable[[str, tuple[Any, ...]], int]]:
        """A write transaction; what it yields runs a statement and returns its row count."""
        ...

    def close(self) -> None: ...


def row_values(
    record: Record, pending: str | os.PathLike[str] | None, bound: str | None
) -> dict[str, Any]:
    """A record as the row that stores it: every column but the spans' sources once."""
    manifest = record.manifest or b""
    thumb_at = _span(manifest, record.thumbnail)
    fp_text = base64.b64encode(record.fingerprint) if record.fingerprint else None
    fp_at = _span(manifest, fp_text)
    return {
        "watermark_id": record.watermark_id,
        "created_at": record.created_at,
        "signer": record.signer,
        "sha256": record.sha256,
        "file_name": record.file_name,
        "manifest_label": record.manifest_label,
        "manifest": record.manifest,
        "summary": json.dumps(record.summary, separators=(",", ":")),
        "thumbnail": None if thumb_at is not None else record.thumbnail,
        "fingerprint": None if fp_at is not None else record.fingerprint,
        "origin": record.origin,
        "verified": None if record.verified is None else int(record.verified),
        "state": "pending" if pending is not None else "committed",
        "pending_path": str(Path(pending).absolute()) if pending is not None else None,
        "pending_pid": os.getpid() if pending is not None else None,
        "binding_alg": bound,
        "pending_host": HOST if pending is not None else None,
        "thumbnail_at": thumb_at,
        "thumbnail_len": len(record.thumbnail)
        if thumb_at is not None and record.thumbnail
        else None,
        "fingerprint_at": fp_at,
        "fingerprint_len": len(fp_text) if fp_at is not None and fp_text else None,
    }


def record_from_row(row: Any) -> Record:
    """The record a row stores, byte for byte what was added (a span read back from the manifest)."""
    data = {k: row[k] for k in RECORD_COLUMNS}
    for key in ("manifest", "thumbnail", "fingerprint"):
        if data[key] is not None:
            data[key] = bytes(data[key])  # PostgreSQL may hand back a memoryview
    manifest = data["manifest"] or b""
    if row["thumbnail_at"] is not None:
        data["thumbnail"] = manifest[
            row["thumbnail_at"] : row["thumbnail_at"] + row["thumbnail_len"]
        ]
    if row["fingerprint_at"] is not None:
        text = manifest[row["fingerprint_at"] : row["fingerprint_at"] + row["fingerprint_len"]]
        data["fingerprint"] = base64.b64decode(text)
    data["summary"] = json.loads(data["summary"] or "{}")
    data["verified"] = None if data["verified"] is None else bool(data["verified"])
    data["origin"] = data["origin"] or "local"
    return Record(**data)


def _span(manifest: bytes, part: bytes | None) -> int | None:
    """Where `part` stands in the manifest, if it does; short parts are kept as they are."""
    if not part or len(part) < 64:
        return None
    at = manifest.find(part)
    return at if at >= 0 else None
