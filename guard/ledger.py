"""Watermark ID → what guard signed. Knows nothing of images.

The ledger is what makes provenance survive lost metadata: a verifier who finds guard's
watermark in a stripped copy looks its ID up here and gets the original manifest back.
SQLite in WAL mode with synchronous=FULL: a committed record survives a crash or a kill.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from guard import config
from guard.errors import GuardError

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    watermark_id   TEXT PRIMARY KEY,
    created_at     TEXT NOT NULL,
    signer         TEXT,
    sha256         TEXT,
    file_name      TEXT,
    manifest_label TEXT,
    manifest       BLOB,
    summary        TEXT NOT NULL DEFAULT '{}',
    thumbnail      BLOB
);
CREATE INDEX IF NOT EXISTS records_sha256 ON records(sha256);
"""


class LedgerError(GuardError):
    pass


@dataclass
class Record:
    watermark_id: str
    signer: str | None = None
    sha256: str | None = None
    file_name: str | None = None
    manifest_label: str | None = None
    manifest: bytes | None = field(default=None, repr=False)
    summary: dict[str, Any] = field(default_factory=dict)
    thumbnail: bytes | None = field(default=None, repr=False)
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("manifest", "thumbnail"):
            out[key] = base64.b64encode(out[key]).decode() if out[key] else None
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Record:
        obj = dict(obj)
        for key in ("manifest", "thumbnail"):
            obj[key] = base64.b64decode(obj[key]) if obj.get(key) else None
        return cls(**{k: obj.get(k) for k in cls.__dataclass_fields__ if k in obj})


class Ledger:
    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else config.ledger_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(
                f"{self.path}: not a usable guard ledger ({exc}); point --ledger or GUARD_LEDGER "
                "at another file"
            ) from exc

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def add(self, record: Record, *, replace: bool = False) -> bool:
        """False when the ID is already taken (and replace is off): IDs are 64 random bits,
        so a clash means the same image was recorded twice, not a collision."""
        row = (
            record.watermark_id,
            record.created_at,
            record.signer,
            record.sha256,
            record.file_name,
            record.manifest_label,
            record.manifest,
            json.dumps(record.summary),
            record.thumbnail,
        )
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self._db:
            cur = self._db.execute(f"{verb} INTO records VALUES (?,?,?,?,?,?,?,?,?)", row)
        return cur.rowcount == 1

    def get(self, watermark_id: str) -> Record | None:
        cur = self._db.execute(
            "SELECT * FROM records WHERE watermark_id = ?", (watermark_id.lower(),)
        )
        row = cur.fetchone()
        return self._record(row) if row else None

    def by_sha256(self, sha256: str) -> Record | None:
        row = self._db.execute("SELECT * FROM records WHERE sha256 = ?", (sha256,)).fetchone()
        return self._record(row) if row else None

    def remove(self, watermark_id: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM records WHERE watermark_id = ?", (watermark_id,))

    def __iter__(self) -> Iterator[Record]:
        for row in self._db.execute("SELECT * FROM records ORDER BY created_at"):
            yield self._record(row)

    @staticmethod
    def _record(row: tuple) -> Record:
        wid, created, signer, sha, name, label, manifest, summary, thumb = row
        return Record(wid, signer, sha, name, label, manifest, json.loads(summary), thumb, created)

    # -- moving records between machines ------------------------------------------------------

    def export(self, path: str | os.PathLike[str]) -> int:
        """JSON Lines, one record per line: diffable, mergeable, readable without guard."""
        from guard.imageio import save_atomic

        lines = [json.dumps(r.to_json(), sort_keys=True) for r in self]
        save_atomic(path, ("\n".join(lines) + "\n" if lines else "").encode(), force=True)
        return len(lines)

    def import_(self, path: str | os.PathLike[str]) -> tuple[int, int]:
        """Returns (added, already present). Existing records are never overwritten."""
        added = skipped = 0
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise LedgerError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(Record.from_json(json.loads(line)))
            except (ValueError, TypeError, KeyError) as exc:
                raise LedgerError(
                    f"{path}:{n}: not a guard ledger export line ({exc}); nothing was imported"
                ) from exc
        for record in records:
            if self.add(record):
                added += 1
            else:
                skipped += 1
        return added, skipped
