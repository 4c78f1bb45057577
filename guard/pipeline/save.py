"""`guard.save(image, path)`: publish an image an attached pipeline returned.

The image's pending provenance (guard.pipeline.record) goes to guard.publish, which signs
without marking the pixels a second time; the call's in-memory input pictures become the
manifest's ingredients.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from guard.errors import GuardError
from guard.pipeline.record import INFO_KEY, pending
from guard.provenance.spec import Ingredient, ManifestSpec


class NoPendingProvenanceError(GuardError):
    """`save` was given an image that did not come out of an attached pipeline."""


def save(
    image: Any,
    path: str | os.PathLike[str],
    *,
    identity: Any = None,
    force: bool = False,
    sidecar: bool = False,
) -> Any:
    """Write an image from an attached pipeline: signed, its watermark recorded in the ledger.

    Returns guard.Published. The format follows the extension (png, jpg, webp, ...).
    """
    from guard.publishing import publish

    p = pending(image)
    if p is None:
        raise NoPendingProvenanceError(
            "this image did not come from a pipeline guard is attached to (or it lost its "
            "provenance in an edit); call guard.attach(pipe) before generating, or sign an "
            "existing file with guard.sign()"
        )
    pixels = image.copy()
    pixels.info.pop(INFO_KEY, None)
    spec = ManifestSpec(**{**p.spec.__dict__, "ingredients": list(p.spec.ingredients)})
    with contextlib.ExitStack() as stack:
        if p.inputs:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="guard-")))
            for n, (im, relationship, title) in enumerate(p.inputs):
                file = folder / f"{n}-{title.replace(' ', '-')}.png"
                im.save(file)
                spec.ingredients.append(Ingredient(file, relationship, title))  # type: ignore[arg-type]
        result = publish(
            pixels,
            path,
            spec,
            identity=identity if identity is not None else p.identity,
            # the mark went in at generation time (or the image was too small for it): never twice
            watermark=p.watermark_id is not None,
            watermark_key=p.watermark_key,
            watermark_id=p.watermark_id,
            ledger=p.ledger,
            force=force,
            sidecar=sidecar,
        )
    result.notes[:0] = p.notes
    return result
