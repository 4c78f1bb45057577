"""Verify (guard): the verdict on a file, or on the images of an IMAGE batch.

A file is judged as `guard verify` judges it (guard.verify): its C2PA manifest, then its pixels.
An IMAGE holds pixels only, so its verdict says the manifest is absent and rests on guard's
watermark and the ledger record the watermark points to (guard.verify_bytes on the pixels encoded
as PNG). Each verdict comes back twice: the report `guard verify` prints (Verdict.summary) and
its `--json` object (Verdict.to_dict, docs/verify-json.md).
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from guard.integrations.comfyui.images import to_pil

if TYPE_CHECKING:
    import torch

    from guard.verdict import Verdict


def verify_inputs(
    images: torch.Tensor | None = None, file: str | os.PathLike[str] | None = None
) -> list[tuple[str, str]]:
    """(report, JSON) for the file, then for each image; at least one of them must be given."""
    verdicts = [*([_file(file)] if file else []), *(_images(images) if images is not None else [])]
    if not verdicts:
        raise ValueError("Verify (guard): connect an IMAGE or name a file to verify")
    return [("\n".join(v.summary()), json.dumps(v.to_dict())) for v in verdicts]


def _file(file: str | os.PathLike[str]) -> Verdict:
    from guard.verdict import verify

    return verify(file)


def _images(images: torch.Tensor) -> list[Verdict]:
    from guard.media.encoding import encode
    from guard.verdict import verify_bytes

    count = len(images)
    return [
        verify_bytes(encode(to_pil(image), "PNG"), name=f"IMAGE {index + 1} of {count}")
        for index, image in enumerate(images)
    ]
