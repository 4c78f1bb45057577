"""Module paths from before the package was split into subpackages, kept importing for one
release: `import guard.infotext` gives the very module `guard.webui.infotext`, with a
DeprecationWarning. `guard.identity` and `guard.ledger` are packages that still export what the old
modules did, so they need no alias.

Hand-written because no library maps one module name onto another lazily: importing every new
module up front to alias it would make `import guard` pull in all of them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED: dict[str, str] = {
    "guard.imageio": "guard.media.imageio",
    "guard.image_formats": "guard.media.formats",
    "guard.image_encoding": "guard.media.encoding",
    "guard.safe_read": "guard.media.safe_read",
    "guard.atomic_write": "guard.media.atomic_write",
    "guard.png_chunks": "guard.media.png_chunks",
    "guard.jpeg_segments": "guard.media.jpeg_segments",
    "guard.exif_block": "guard.media.exif_block",
    "guard.carried": "guard.media.carried",
    "guard.reencoding": "guard.media.reencoding",
    "guard.local_ca": "guard.identity.local_ca",
    "guard.trust": "guard.identity.trust",
    "guard.ledger_schema": "guard.ledger.schema",
    "guard.ledger_match": "guard.ledger.match",
    "guard.fingerprint": "guard.ledger.fingerprint",
    "guard.infotext": "guard.webui.infotext",
    "guard.webui_samplers": "guard.webui.samplers",
    "guard.generation_record": "guard.webui.generation_record",
    "guard.hooks": "guard.pipeline.hooks",
    "guard.pipeline_record": "guard.pipeline.record",
    "guard.pipeline_save": "guard.pipeline.save",
    "guard.pipeline_watermarker": "guard.pipeline.watermarker",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new}; the old path goes away in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """The new module ran when it was imported; nothing more to do."""


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        return importlib.machinery.ModuleSpec(fullname, _Alias(new)) if new else None


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
