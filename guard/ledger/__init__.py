"""The ledger: what guard signed, by watermark ID, and how far a found record may speak for a file.

- record: a record and its ID rules;
- store: `Ledger`, over a SQLite file (sqlite, readonly) or PostgreSQL (postgres), one table (table);
- schema: the checks on an export line before it reaches a ledger;
- fingerprint: the marked picture's own content descriptor;
- match: a record found through a file's watermark, and what it may claim.
"""

from __future__ import annotations

from guard.ledger.record import BINARY_FIELDS, ID_PATTERN, LedgerError, Record, normalise_id
from guard.ledger.store import LEDGER_VERSION, Ledger

__all__ = [
    "BINARY_FIELDS",
    "ID_PATTERN",
    "LEDGER_VERSION",
    "Ledger",
    "LedgerError",
    "Record",
    "normalise_id",
]
