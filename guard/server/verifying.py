"""Verify an upload with the same library call as `guard verify` (bytes in, named by the
upload, so no server path can appear in the verdict or its messages). guard.server.checks runs
it in a worker process, under the per-file budget."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from guard.verdict import verify_bytes

if TYPE_CHECKING:
    from guard.ledger import Ledger
    from guard.resolvers import Resolvers
    from guard.server.uploads import Upload
    from guard.verdict import Verdict


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
