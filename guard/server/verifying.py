"""Verify an upload with the same library call as `guard verify` (bytes in, named by the
upload, so no server path can appear in the verdict or its messages). guard.server.checks runs
it in a worker process, under the per-file budget."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from guard.verdict import verify_bytes

if TYPE_CHECKING:
    from guard.ledger import Ledger
    from guard.resolvers import Resolvers
    from guard.verdict import Verdict


@dataclass
class Upload:
    """A file as received: here, not in guard.server.uploads, so that a check worker needs no
    web framework to hold one."""

    name: str  # safe to put in a file name and in a response (uploads.safe_name)
    data: bytes


def verify_upload(
    upload: Upload,
    *,
    trust_files: tuple[Path, ...],
    watermark_key: bytes | None,
    ledger: Ledger,
    sidecar: bytes | None = None,
    resolvers: Resolvers | None = None,
) -> Verdict:
    return verify_bytes(
        upload.data,
        name=upload.name,
        sidecar=sidecar,
        trust_files=trust_files,
        watermark=True,
        watermark_key=watermark_key,
        ledger=ledger,
        resolvers=resolvers,
    )
