"""What the server's jobs do: sign or protect one upload with the server's identity, ledger
and protection model, through the same library calls as `guard sign` and `guard protect`.

The identity is resolved and the model loaded on first use, once, then shared by every job.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from guard.server.jobs import Job

if TYPE_CHECKING:
    from pathlib import Path

    from guard.identity import Identity
    from guard.protection.models import ProtectionModel
    from guard.protection.params import Mode
    from guard.server.ledgers import Ledgers
    from guard.server.settings import ServeSettings
    from guard.server.uploads import Part


class Work:
    def __init__(self, settings: ServeSettings, ledgers: Ledgers) -> None:
        self.settings = settings
        self.ledgers = ledgers
        self._lock = threading.Lock()
        self._identity: Identity | None = None
        self._models: dict[bool, ProtectionModel] = {}

    def identity(self) -> Identity:
        with self._lock:
            if self._identity is None:
                from guard.identity import Identity

                source = self.settings.identity
                self._identity = source() if callable(source) else (source or Identity.default())
            return self._identity

    def model(self, mode: Mode) -> ProtectionModel:
        need_unet = mode != "textural"
        with self._lock:
            if need_unet not in self._models:
                from guard.protection import load_model

                self._models[need_unet] = load_model(
                    self.settings.model,
                    mode=mode,
                    device=self.settings.device,
                )
            return self._models[need_unet]

    def sign(self, job: Job, *, training: str, source: str, author: str | None) -> None:
        import guard

        src = _input(job)
        job.stage = "signing"
        pub = guard.sign(
            src,
            training=training,  # type: ignore[arg-type]
            source=source,
            author=author or None,
            identity=self.identity(),
            watermark_key=self.settings.watermark_key,
            ledger=self.ledgers.get(),
        )
        job.output, job.output_name = pub.path, pub.path.name
        job.result = {
            "file": pub.path.name,
            "sha256": pub.sha256,
            "manifest": pub.manifest_label,
            "watermark_id": pub.watermark_id,
            "training": training,
            "signer": self.identity().subject_name,
            "notes": list(pub.notes),
        }

    def protect(self, job: Job, *, strength: str, mode: Mode) -> None:
        import guard

        src = _input(job)
        job.stage = "loading the protection model"
        model = self.model(mode)
        job.stage = "protecting"
        pub = guard.protect_file(
            src,
            strength=strength,
            mode=mode,
            model=model,
            identity=self.identity,
            watermark_key=self.settings.watermark_key,
            ledger=self.ledgers.get(),
            on_progress=job.progress,
        )
        job.output, job.output_name = pub.path, pub.path.name
        result: dict[str, Any] = {
            "file": pub.path.name,
            "sha256": pub.sha256,
            "manifest": pub.manifest_label,
            "watermark_id": pub.watermark_id,
            "training": "notAllowed",
            "signer": self.identity().subject_name,
            "seconds": round(pub.seconds, 2),
            "protection": pub.protection.to_assertion() if pub.protection else None,
            "notes": list(pub.notes),
        }
        job.result = result


def stage(job: Job, part: Part) -> None:
    """Put the upload on disk in the job's private folder, named as the user named it, so a
    waiting job holds no image in memory (copied from the form's spool, never read whole)."""
    job.input = job.folder / part.name
    part.save(job.input)


def _input(job: Job) -> Path:
    assert job.input is not None
    return job.input
