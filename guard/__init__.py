"""guard: image provenance, invisible watermarking and artwork protection.

The public API is small and imports nothing heavy until used. Modules are named for what they
hold (`verdict`, `protection`) rather than for the function, so `guard.verify` and `guard.protect`
stay functions even after their modules are imported.

    import guard
    guard.sign("art.png", "art.signed.png", author="Ada")   # watermark + C2PA, atomic save
    verdict = guard.verify("art.signed.png")                 # -> guard.Verdict
    for path, v in guard.verify_many(paths): ...             # every core, in input order
    guard.protect(image).image                               # adversarial protection (torch)
    guard.protect_file("art.png")                            # -> art.protected.png, signed
    guard.attach(pipe); guard.save(image, "out.png")         # diffusers pipeline hook
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from guard import _moved

__version__ = "0.1.0"

# public name -> (module, attribute); resolved on first use so `import guard` stays cheap
_LAZY: dict[str, tuple[str, str]] = {
    "GuardError": ("guard.errors", "GuardError"),
    "Identity": ("guard.identity.signer", "Identity"),
    "ManifestSpec": ("guard.provenance.spec", "ManifestSpec"),
    "Ingredient": ("guard.provenance.spec", "Ingredient"),
    "Assertion": ("guard.provenance.spec", "Assertion"),
    "publish": ("guard.publishing", "publish"),
    "Published": ("guard.publishing", "Published"),
    "sign": ("guard.publishing", "sign"),
    "verify": ("guard.verdict", "verify"),
    "verify_bytes": ("guard.verdict", "verify_bytes"),
    "verify_many": ("guard.scan.batch", "verify_many"),
    "Verdict": ("guard.verdict", "Verdict"),
    "Detection": ("guard.watermark", "Detection"),
    "scan": ("guard.scan.api", "scan"),
    "scan_dataset": ("guard.scan.api", "scan_dataset"),
    "ScanRow": ("guard.scan.row", "ScanRow"),
    "Ledger": ("guard.ledger.store", "Ledger"),
    "protect": ("guard.protection", "protect"),
    "Protected": ("guard.protection", "Protected"),
    "protect_file": ("guard.protection.workflow", "protect_file"),
    "attach": ("guard.pipeline.hooks", "attach"),
    "save": ("guard.pipeline.save", "save"),
}

__all__ = ["__version__", *_LAZY]

_moved.install()  # `import guard.infotext` and the other pre-split paths keep working


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'guard' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from guard.errors import GuardError
    from guard.identity import Identity
    from guard.ledger import Ledger
    from guard.pipeline.hooks import attach
    from guard.pipeline.save import save
    from guard.protection import Protected, protect
    from guard.protection.workflow import protect_file
    from guard.provenance.spec import Assertion, Ingredient, ManifestSpec
    from guard.publishing import Published, publish, sign
    from guard.scan.api import scan, scan_dataset
    from guard.scan.batch import verify_many
    from guard.scan.row import ScanRow
    from guard.verdict import Verdict, verify, verify_bytes
    from guard.watermark import Detection
