"""A ledger record and the rules for its watermark ID, apart from any storage.

The store (guard.ledger.store) and the export-line checks (guard.ledger.schema) both build
records; neither imports the other for it.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from guard.errors import GuardError

ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")


def normalise_id(watermark_id: str) -> str:
    """IDs are 16 lower-case hex digits everywhere: stored, looked up, exported."""
    return watermark_id.strip().lower().removeprefix("0x")


class LedgerError(GuardError):
    """`reason`: what failed, without any path, for those who must not learn where the ledger
    is (a server's clients); the message itself names the file for whoever runs guard."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


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
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat())
    fingerprint: bytes | None = field(default=None, repr=False)
    # 'local' (signed on this machine) or 'imported'; for imported records `verified` says
    # whether the stored manifest's signature verified and binds this watermark ID. The
    # free-text fields (signer, summary) of an unverified record are claims, not facts.
    origin: str = "local"
    verified: bool | None = None

    def __post_init__(self) -> None:
        self.watermark_id = normalise_id(self.watermark_id)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in BINARY_FIELDS:
            out[key] = base64.b64encode(out[key]).decode() if out[key] else None
        return out


BINARY_FIELDS = ("manifest", "thumbnail", "fingerprint")
