"""The only module that talks to c2pa-python: sign bytes, read and validate bytes.

Settings that matter offline and for small images are fixed here once: no remote manifest
fetch, and no SDK thumbnail (it would upscale small images to 1024 px; guard supplies its own).
What the SDK reports is turned into a `ManifestReport` by `guard.provenance.report`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guard.errors import SigningError
from guard.provenance import manifest as manifest_mod
from guard.provenance import remote
from guard.provenance.report import (
    SHAPE,
    ManifestReport,
    failure,
    parse_store,
    status_codes,
)
from guard.provenance.report import Failure as Failure  # re-exported: the report types live there

if TYPE_CHECKING:
    from PIL import Image

    from guard.identity import Identity

THUMBNAIL_MAX = 256


def _context(trust_pem: str | None = None, *, remote_fetch: bool = False):
    import c2pa

    settings: dict[str, Any] = {
        "verify": {"remote_manifest_fetch": remote_fetch},
        "builder": {"thumbnail": {"enabled": False}},
    }
    if trust_pem:
        settings["trust"] = {"user_anchors": trust_pem}
    return c2pa.Context.from_dict(settings)


_READ_CONTEXTS: dict[tuple[int, str | None], Any] = {}
_READ_CONTEXTS_LOCK = threading.Lock()
_MAX_READ_CONTEXTS = 8  # trust lists in use at once (a server's, a test's); more are rebuilt


@contextlib.contextmanager
def _read_context(trust_pem: str | None = None) -> Iterator[Any]:
    """The Context every Reader of this process with these trust anchors shares: building one
    (settings parsed from JSON, natively) costs about as much as reading a small file's store,
    and a batch paid it for every file. The SDK lets readers share a Context (its own default
    one is shared so); one is never used across a fork (the key holds the process ID)."""
    key = (os.getpid(), trust_pem)
    with _READ_CONTEXTS_LOCK:
        ctx = _READ_CONTEXTS.get(key)
        if ctx is None:
            if len(_READ_CONTEXTS) >= _MAX_READ_CONTEXTS:
                _READ_CONTEXTS.clear()  # readers still holding an old one keep it alive
            ctx = _READ_CONTEXTS[key] = _context(trust_pem)
    yield ctx


def thumbnail_jpeg(image: Image.Image) -> bytes:
    """At most 256 px on the long side, never upscaled (small images keep their size)."""
    thumb = image.convert("RGB") if image.mode != "RGB" else image.copy()
    thumb.thumbnail((THUMBNAIL_MAX, THUMBNAIL_MAX))
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=80)
    return buf.getvalue()


@dataclass
class IngredientBytes:
    data: bytes
    mime: str
    title: str
    relationship: str


def sign(
    definition: dict[str, Any],
    data: bytes,
    mime: str,
    identity: Identity,
    *,
    thumbnail: bytes | None = None,
    ingredients: list[IngredientBytes] | None = None,
    sidecar: bool = False,
) -> tuple[bytes, bytes]:
    """Return (asset bytes, manifest store bytes). With `sidecar`, the asset bytes are the input
    unchanged and the manifest store is meant for a `.c2pa` file beside it."""
    import c2pa

    signer = identity.c2pa_signer()
    try:
        with _context() as ctx, c2pa.Builder(definition, context=ctx) as builder:
            if thumbnail is not None:
                builder.add_resource(manifest_mod.THUMBNAIL_ID, io.BytesIO(thumbnail))
            for i, ing in enumerate(ingredients or []):
                builder.add_ingredient(
                    {
                        "title": ing.title,
                        "relationship": ing.relationship,
                        "label": manifest_mod.ingredient_label(i),
                    },
                    ing.mime,
                    io.BytesIO(ing.data),
                )
            if sidecar:
                builder.set_no_embed()
            out = io.BytesIO()
            store = builder.sign(signer, mime, io.BytesIO(data), out)
            return (data if sidecar else out.getvalue()), store
    except c2pa.C2paError as exc:
        raise SigningError(f"C2PA signing failed: {exc}") from exc
    finally:
        signer.close()


def has_manifest(data: bytes, mime: str) -> bool:
    import c2pa

    try:
        with _read_context() as ctx, c2pa.Reader(mime, io.BytesIO(data), context=ctx):
            return True
    except c2pa.C2paError:
        return False


# -- reading ---------------------------------------------------------------------------------------

# The JUMBF description-box type of a C2PA manifest store ("c2pa" + the ISO 19566-5 suffix). Its 16
# bytes in a file mean a store is there, whether or not the SDK can still find and parse it.
STORE_UUID = b"c2pa\x00\x11\x00\x10\x80\x00\x00\xaa\x00\x38\x9b\x71"
# Hard bindings tie a manifest to the asset's bytes; a stored manifest alone cannot satisfy them.
HARD_BINDING_CODES = ("assertion.dataHash.", "assertion.boxesHash.", "assertion.bmffHash.")
DAMAGED = "guard.manifest.damaged"  # a store is there but the SDK cannot parse it
MISPLACED = "guard.manifest.misplaced"  # a store is in the bytes but not where the format puts it
UNKNOWN_ALGORITHM = "guard.manifest.unknownAlgorithm"  # found, signed with an algorithm unknown
PRERELEASE = "guard.manifest.prerelease"  # found, made to a pre-release draft of C2PA
# Stores the SDK finds and refuses to check, by its reason. c2pa-python raises both as
# C2paError.Other ("Other: unknown algorithm"), so the words of c2pa-rs's error (its Display text
# for Error::UnknownAlgorithm and Error::PrereleaseError) are all that tells them apart.
_REFUSED = {"unknown algorithm": UNKNOWN_ALGORITHM, "prerelease content detected": PRERELEASE}
UNCHECKED = frozenset(_REFUSED.values())  # the store may well match: it was not checked


def _refused(exc: Exception) -> str | None:
    """guard's code for a store the SDK found but will not check, else None."""
    words = str(exc).split(": ", 1)[-1].strip().lower()
    return _REFUSED.get(words)


def _remote(exc: Exception) -> str | None:
    """The URL of the remote store the SDK was told not to fetch, else None. c2pa-rs reports it
    as "Remote: must fetch remote manifests from url URL", a type c2pa-python 0.38 does not map
    to C2paError.RemoteManifest, so the words decide."""
    import c2pa

    message = str(exc)
    if not (isinstance(exc, c2pa.C2paError.RemoteManifest) or message.startswith("Remote:")):
        return None
    return remote.from_sdk(message) or ""  # "": remote, but no URL named (refused)


def read(
    data: bytes, mime: str, *, trust_pem: str | None, sidecar: bytes | None = None
) -> ManifestReport:
    """Validate the manifest in `data` (or in `sidecar`, a `.c2pa` store for `data`).

    `remote` when the file holds no store but names one at a URL (XMP `dcterms:provenance`):
    the SDK never fetches it (`guard.provenance.remote_fetch` may). `absent` only when no store
    is there at all. The SDK's typed errors decide: ManifestNotFound,
    and the errors about the container rather than a store (Other: the asset does not parse,
    NotSupported, RemoteManifest: not fetched), mean no store was found, unless the store's JUMBF
    type is in the bytes anyway (then it is `invalid`: misplaced). A store the SDK found and refuses
    to check (an unknown signing algorithm, a pre-release claim) is `invalid` with that reason's
    own code. Every other error means a store was found and could not be read: `invalid`, with the
    SDK's reason.
    """
    import c2pa

    present = sidecar is not None or STORE_UUID in data
    try:
        with (
            _read_context(trust_pem) as ctx,
            c2pa.Reader(mime, io.BytesIO(data), manifest_data=sidecar, context=ctx) as reader,
        ):
            store = json.loads(reader.json())
            sdk_state = reader.get_validation_state()
    except c2pa.C2paError as exc:
        url = _remote(exc)
        if url is not None and not present:  # no store here: the file names one elsewhere
            return ManifestReport(state="remote", remote=remote.reference(url, "xmp"))
        refused = _refused(exc)
        if refused:
            return ManifestReport(state="invalid", failures=[failure(refused, str(exc))])
        no_store = (
            c2pa.C2paError.ManifestNotFound,
            c2pa.C2paError.NotSupported,
            c2pa.C2paError.RemoteManifest,
            c2pa.C2paError.Other,
        )
        if not isinstance(exc, no_store):
            return ManifestReport(state="invalid", failures=[failure(DAMAGED, str(exc))])
        if present:
            return ManifestReport(state="invalid", failures=[failure(MISPLACED, str(exc))])
        if isinstance(exc, c2pa.C2paError.ManifestNotFound):
            return ManifestReport(state="absent")
        return ManifestReport(state="absent", notes=[f"the C2PA reader said: {exc}"])
    report = parse_store(store)
    state = (sdk_state or "invalid").lower()
    report.state = state if state in ("trusted", "valid", "invalid") else "invalid"
    if any(f.code == SHAPE for f in report.failures):
        report.state = "invalid"
    report.sidecar = sidecar is not None
    return report


def read_store(store: bytes, *, trust_pem: str | None) -> ManifestReport:
    """Validate a manifest store on its own (the ledger keeps one per watermark ID).

    Its signature, the signer's trust and every hashed statement are checked; the hard binding to
    the asset's bytes cannot be, as the asset is not here, so those results are set aside and the
    report says `detached`. The state then follows the SDK's rule on what remains.
    """
    import c2pa

    try:
        with (
            _read_context(trust_pem) as ctx,
            c2pa.Reader("application/c2pa", io.BytesIO(store), context=ctx) as reader,
        ):
            parsed = json.loads(reader.json())
    except c2pa.C2paError as exc:
        code = _refused(exc) or DAMAGED
        return ManifestReport(state="invalid", detached=True, failures=[failure(code, str(exc))])
    report = parse_store(parsed)
    report.detached = True
    report.failures = [f for f in report.failures if not f.code.startswith(HARD_BINDING_CODES)]
    success = status_codes(parsed, "success")
    if "claimSignature.validated" not in success:
        report.state = "invalid"
        if not report.failures:
            report.failures.append(failure("claimSignature.missing", "no validated signature"))
    elif any(f.code != "signingCredential.untrusted" for f in report.failures):
        report.state = "invalid"
    else:
        report.state = "trusted" if "signingCredential.trusted" in success else "valid"
    return report


def thumbnails(data: bytes, mime: str, *, sidecar: bytes | None = None) -> dict[str, bytes]:
    """Manifest label -> that manifest's claim thumbnail, for every manifest in the store (the
    active one and its ingredients'): what a history timeline shows. Empty when there is none.
    `mime` 'application/c2pa' reads a bare manifest store (a ledger record's)."""
    import c2pa

    out: dict[str, bytes] = {}
    try:
        with (
            _read_context() as ctx,
            c2pa.Reader(mime, io.BytesIO(data), manifest_data=sidecar, context=ctx) as reader,
        ):
            store = json.loads(reader.json())
            manifests = store.get("manifests") if isinstance(store, dict) else None
            for label, manifest in (manifests if isinstance(manifests, dict) else {}).items():
                thumb = manifest.get("thumbnail") if isinstance(manifest, dict) else None
                ident = thumb.get("identifier") if isinstance(thumb, dict) else None
                if not isinstance(ident, str):
                    continue
                buf = io.BytesIO()
                try:
                    reader.resource_to_stream(ident, buf)
                except c2pa.C2paError:
                    continue
                out[label] = buf.getvalue()
    except (c2pa.C2paError, ValueError):
        return {}
    return out
