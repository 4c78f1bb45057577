"""A ledger record found through a file's watermark, and how far it may speak for the file.

The watermark only says which record a file points at. The record's facts come from its stored
manifest, validated on its own (signature, trust, and a soft binding to this watermark ID), and
reach the file only when the file's picture is the record's picture (`guard.ledger.fingerprint`): a
mark can be lifted onto anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guard.provenance import c2pa_io, vocab

if TYPE_CHECKING:
    from PIL import Image

    from guard.ledger.fingerprint import ContentMatch, Region
    from guard.ledger.store import Ledger, Record
    from guard.resolvers import Answer, Resolvers
    from guard.watermark import Detection


@dataclass
class LedgerMatch:
    """A record found through the watermark: a lookup, not a cryptographic binding.

    Its facts come only from the record's stored manifest, validated on its own (signature, trust,
    and a soft binding to this watermark ID). Free text in the record is never shown: a record whose
    manifest does not pass is reported as unverified, with `problem` saying why.
    """

    watermark_id: str
    created_at: str
    file_name: str | None
    sha256: str | None
    manifest: c2pa_io.ManifestReport | None
    file_matches_record: bool
    problem: str | None = None
    content: ContentMatch | None = None  # this file's picture against the record's picture
    resolver: str | None = None  # the resolver that returned the record; None: the local ledger
    binding: str = "watermark"  # how it was found: the mark read here, or "content" (byContent)

    @property
    def verified(self) -> bool:
        return self.problem is None and self.manifest is not None

    @property
    def content_match(self) -> bool | None:
        """True: the whole picture is the record's; False: it is not (another picture, or the
        record's picture in part of it only: see `content_region`); None: the record holds
        nothing to compare (or too little of it is in this file)."""
        return self.content.match if self.content else None

    @property
    def content_region(self) -> Region | None:
        """Where the record's picture is, when it is only part of this file (a collage, an
        edit): its claims are for that part, never for the whole."""
        return self.content.region if self.content else None

    @property
    def applies(self) -> bool:
        """The record's claims are this file's only when its manifest vouches for the record
        and the picture is the record's picture: a mark can be lifted onto anything."""
        return self.verified and self.content_match is True

    def _fact(self, value: str | None) -> str | None:
        return value if self.applies else None

    @property
    def signer(self) -> str | None:
        return self._fact(self.manifest.signer_name if self.manifest else None)

    @property
    def training(self) -> str | None:
        return self._fact(self.manifest.training if self.manifest else None)

    @property
    def digital_source_type(self) -> str | None:
        return self._fact(self.manifest.digital_source_type if self.manifest else None)

    @property
    def author(self) -> str | None:
        return self._fact(self.manifest.author if self.manifest else None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "match": True,
            "binding": self.binding,
            "watermark_id": self.watermark_id,
            "verified": self.verified,
            "problem": self.problem,
            "content_match": self.content_match,
            "content_score": self.content.score if self.content else None,
            "content_problem": self.content.reason if self.content else None,
            "content_region": self.content_region.to_dict() if self.content_region else None,
            "signer": self.signer,
            "signed_at": self.created_at or None,
            "resolver": self.resolver,
            "file_name": self.file_name,
            "sha256": self.sha256,
            "file_matches_record": self.file_matches_record,
            "digital_source_type": self.digital_source_type,
            "digital_source": vocab.source_words(self.digital_source_type),
            "training": self.training,
            "author": self.author,
            "manifest": self.manifest.to_dict() if self.manifest else None,
        }


def find(
    detection: Detection,
    image: Image.Image,
    *,
    sha256: str | None,
    ledger: Ledger | None,
    anchors: str,
) -> LedgerMatch | None:
    """The record for a found mark (None when the ledger has none), checked as above."""
    if not (detection.found and detection.payload):
        return None
    record = _lookup(detection.payload.hex(), ledger)
    if record is None:
        return None
    return _match(record, sha256, anchors, image, detection)


def resolve(
    detection: Detection,
    image: Image.Image,
    *,
    sha256: str | None,
    anchors: str,
    resolvers: Resolvers,
    upload: tuple[bytes, str] | None = None,
) -> tuple[LedgerMatch | None, list[Answer]]:
    """The record for a found mark from remote resolvers (`guard.resolvers`), when the local
    ledger has none; with `upload` (the file's bytes and media type, sent only when
    `resolvers.upload` allows it) also the records a resolver finds for the picture itself. A
    resolver is trusted only for the bytes it returns: each manifest store goes through `_match`
    like a local record's, and the first whose claims apply wins."""
    from guard.ledger.store import Record
    from guard.resolvers import client

    found = bool(detection.found and detection.payload)
    watermark_id = detection.payload.hex() if found and detection.payload else None
    if not found:  # compared as it is: no crop or rotation measured, a resize is the frame's
        detection = dataclasses.replace(detection, alignment=_as_it_is())
    query = client.Query(
        alg=detection.scheme if found else None,
        watermark_id=watermark_id,
        upload=upload if resolvers.upload else None,
    )

    def judge(url: str, manifest_id: str, store: bytes) -> LedgerMatch:
        # no mark read here (a private key's, found by the resolver in the pixels): the store
        # must still carry a watermark binding, and its picture must be this one
        record = Record(
            watermark_id or "", manifest_label=manifest_id, manifest=store, created_at=""
        )
        match = _match(record, sha256, anchors, image, detection, resolver=url)
        match.binding = "watermark" if found else "content"
        return match

    return client.ask(resolvers, query, judge)


def _as_it_is() -> Any:
    from guard.watermark.engine import Alignment

    # the working frame (short side 512) of the file is the record's: no offset, no repeat
    return Alignment(matrix=((1.0, 0.0), (0.0, 1.0)), shift=(0.0, 0.0), period=1 << 20)


def _lookup(watermark_id: str, ledger: Ledger | None) -> Record | None:
    from guard.ledger.store import Ledger

    if ledger is not None:
        return ledger.get(watermark_id)
    with Ledger() as own:
        return own.get(watermark_id)


def _match(
    record: Record,
    sha256: str | None,
    anchors: str,
    image: Image.Image,
    detection: Detection,
    *,
    resolver: str | None = None,
) -> LedgerMatch:
    """One path for every record, local or from a resolver: its stored manifest validated on its
    own, its binding to this ID, and its picture against this one."""
    manifest = c2pa_io.read_store(record.manifest, trust_pem=anchors) if record.manifest else None
    # a record found by content alone (no mark read here) is the ID its own store binds
    bound = (manifest.soft_binding if manifest else None) or {}
    watermark_id = record.watermark_id or str(bound.get("id") or "")
    return LedgerMatch(
        watermark_id=watermark_id,
        created_at=record.created_at or (manifest.signed_at if manifest else None) or "",
        file_name=record.file_name,
        sha256=record.sha256,
        manifest=manifest,
        file_matches_record=record.sha256 == sha256,
        problem=_unverified(watermark_id, manifest),
        content=_content(record, manifest, image, detection),
        resolver=resolver,
    )


def _content(
    record: Record,
    manifest: c2pa_io.ManifestReport | None,
    image: Image.Image,
    detection: Detection,
) -> ContentMatch:
    """Compare the picture with the record's: the signed fingerprint first, then the record's
    own, then one rebuilt from its thumbnail (records made before fingerprints)."""
    from guard.ledger import fingerprint

    reference = (manifest.fingerprint if manifest else None) or record.fingerprint
    if reference is None and record.thumbnail:
        try:
            reference = fingerprint.from_thumbnail(record.thumbnail)
        except (OSError, ValueError, SyntaxError):  # a damaged thumbnail: nothing to compare
            reference = None
    if reference is None:
        return fingerprint.ContentMatch(None, None, "the record holds no picture to compare")
    return fingerprint.compare(reference, image, detection.alignment)


def _unverified(watermark_id: str, manifest: c2pa_io.ManifestReport | None) -> str | None:
    """Why a record's stored manifest cannot vouch for it, or None when it can."""
    if manifest is None:
        return "the record holds no manifest"
    if manifest.state == "valid":
        return "its manifest is signed by someone not in your trust list"
    if manifest.state != "trusted":
        words = "; ".join(dict.fromkeys(f.meaning for f in manifest.failures))
        return "its manifest does not verify" + (f" ({words})" if words else "")
    bound = (manifest.soft_binding or {}).get("id")
    if bound != watermark_id.lower():
        return (
            "its manifest is bound to a different watermark ID"
            if bound
            else ("its manifest carries no watermark binding")
        )
    return None
