"""One answer per file: combines the C2PA manifest, XMP, guard's watermark + ledger and
third-party marks into a `Verdict`. It decides nothing else.

The order is fixed: the bytes and their C2PA store are judged first, and pixels are decoded only
afterwards. A signed file whose pixels no longer decode is still judged by its manifest (the
undecodable pixels become a note); only bytes that carry no credentials and are not an image
guard reads raise ImageInputError.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard import imageio, trust
from guard.errors import ImageInputError
from guard.provenance import c2pa_io, vocab, xmp

if TYPE_CHECKING:
    from PIL import Image

    from guard.fingerprint import ContentMatch
    from guard.ledger import Ledger, Record
    from guard.watermark import Detection, ThirdPartyMark

SCHEMA_VERSION = 1
OK_STATES = ("trusted", "valid")
# Above this many pixels an image is decoded reduced for the watermark (which works at a 512 px
# short side) and the fragile third-party marks, which only survive at full size, are not checked.
FULL_DECODE_PIXELS = 4096 * 2048  # 8.4 MP: above native generation sizes (SDXL 1 MP, hires 4 MP)


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

    @property
    def verified(self) -> bool:
        return self.problem is None and self.manifest is not None

    @property
    def content_match(self) -> bool | None:
        """True: the picture is the record's; False: the mark belongs to another picture;
        None: the record holds nothing to compare (or too little of it is in this file)."""
        return self.content.match if self.content else None

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
            "binding": "watermark",
            "watermark_id": self.watermark_id,
            "verified": self.verified,
            "problem": self.problem,
            "content_match": self.content_match,
            "content_score": self.content.score if self.content else None,
            "content_problem": self.content.reason if self.content else None,
            "signer": self.signer,
            "signed_at": self.created_at,
            "file_name": self.file_name,
            "sha256": self.sha256,
            "file_matches_record": self.file_matches_record,
            "digital_source_type": self.digital_source_type,
            "digital_source": vocab.source_words(self.digital_source_type),
            "training": self.training,
            "author": self.author,
            "manifest": self.manifest.to_dict() if self.manifest else None,
        }


@dataclass
class Verdict:
    file: str
    c2pa: c2pa_io.ManifestReport
    xmp: xmp.XmpFacts = field(default_factory=xmp.XmpFacts)
    watermark: Detection | None = None  # None: not asked for (watermark=False)
    ledger: LedgerMatch | None = None
    third_party_marks: list[ThirdPartyMark] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why
    sha256: str | None = None

    @property
    def state(self) -> str:
        return self.c2pa.state

    @property
    def ok(self) -> bool:
        return self.c2pa.state in OK_STATES

    @property
    def training(self) -> str | None:
        """What the file says about AI training, from the strongest source that says anything.

        A manifest counts only when it matches these bytes (an invalid one describes the file as
        it was signed, not this one); a ledger record only when verified and its picture matches.
        """
        if self.c2pa.state in OK_STATES and self.c2pa.training:
            return self.c2pa.training
        if self.ledger and self.ledger.training:
            return self.ledger.training
        return self.xmp.training

    @property
    def digital_source_type(self) -> str | None:
        """Likewise: a valid manifest, else a matching verified record, else the file's XMP."""
        if self.c2pa.state in OK_STATES and self.c2pa.digital_source_type:
            return self.c2pa.digital_source_type
        if self.ledger and self.ledger.digital_source_type:
            return self.ledger.digital_source_type
        return self.xmp.digital_source_type

    def summary(self) -> list[str]:
        """The short human report, one fact per line."""
        c = self.c2pa
        lines = [f"{self.file}: {c.state.upper()}" + _state_gloss(c)]
        if c.state != "absent":
            if c.signer_name:
                lines.append(f"  signed by: {c.signer_name} (issuer: {c.signer.get('issuer')})")
            lines.append(f"  signed at: {c.signed_at or 'not timestamped'}")
            if c.claim_generator:
                lines.append(f"  made with: {c.claim_generator}")
            if c.author:
                lines.append(f"  author: {c.author}")
            if c.actions:
                lines.append("  history: " + " → ".join(_action_words(a) for a in c.actions))
            for ing in c.ingredients:
                indent = "    " + "  " * ing["depth"]
                who = f", signed by {ing['signer']}" if ing.get("signer") else ""
                lines.append(f"{indent}↳ {ing['relationship']}: {ing['title']}{who}")
            for f in c.failures:
                lines.append(f"  problem: {f.code}: {f.meaning}")
        source = vocab.source_words(self.digital_source_type)
        if source:
            lines.append(f"  source: {source}")
        training = self.training
        lines.append(
            "  training: "
            + (vocab.TRAINING_WORDS.get(training, training) if training else "no statement")
        )
        for d in self.disagreements:
            lines.append(f"  warning: {d}")
        lines.extend(f"  note: {n}" for n in self.notes)
        lines.extend(self._watermark_lines())
        for mark in self.third_party_marks:
            lines.append(
                f"  third-party mark: {mark.name} (bit agreement {mark.bit_agreement:.2f}, "
                f"p = {mark.p_value:.1e}; a fragile mark)"
            )
        return lines

    def _watermark_lines(self) -> list[str]:
        w = self.watermark
        if w is None:
            return []
        if not w.found:
            return [f"  watermark: {'not checked: ' + w.reason if w.reason else 'none found'}"]
        lines = [f"  watermark: found (p = {w.p_value:.1e}), ID {w.id}"]
        changes = _geometry_words(w.geometry or {})
        if changes:
            lines.append(f"    this copy was {changes} since it was marked")
        if not self.ledger:
            return [*lines, "    no record for this ID in the local ledger"]
        m = self.ledger
        day = str(m.created_at)[:10]
        if not m.verified:
            lines.append(f"    matches a record made on {day}, but the record is UNVERIFIED:")
            lines.append(f"    {m.problem}; none of its claims are used")
            return lines
        if m.content_match is False:
            lines.append(f"    this mark BELONGS TO ANOTHER IMAGE (a record made on {day}): the")
            lines.append("    picture does not match the record's picture, so the mark was copied")
            lines.append("    onto this file; none of the record's claims apply to it")
            return lines
        if m.content_match is None:
            why = m.content.reason if m.content else "nothing to compare"
            lines.append(f"    points to a record made on {day}, but this picture could not be")
            lines.append(f"    compared with the record's picture ({why}); its claims are not used")
            return lines
        lines.append(f"    matches a record signed by {m.signer or 'an unnamed signer'} on {day}")
        lines.append("    and this picture matches the record's picture")
        facts = [vocab.source_words(m.digital_source_type)]
        facts.append(vocab.TRAINING_WORDS.get(m.training or "", None))
        lines.append("    record says: " + ", ".join(f for f in facts if f))
        if self.c2pa.state == "absent":
            lines.append(
                "    metadata was stripped: this match comes from the watermark, not from a"
            )
            lines.append("    cryptographic binding to these bytes")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The stable `--json` schema, documented in docs/verify-json.md."""
        return {
            "schema": SCHEMA_VERSION,
            "file": self.file,
            "sha256": self.sha256,
            "ok": self.ok,
            "c2pa": self.c2pa.to_dict(),
            "xmp": self.xmp.to_dict(),
            "digital_source_type": self.digital_source_type,
            "training": self.training,
            "disagreements": self.disagreements,
            "notes": self.notes,
            "watermark": self.watermark.to_dict() if self.watermark else None,
            "ledger": self.ledger.to_dict() if self.ledger else {"match": False},
            "third_party_marks": [m.to_dict() for m in self.third_party_marks],
        }


def verify(
    path: str | os.PathLike[str],
    *,
    trust_files: tuple[str | os.PathLike[str], ...] = (),
    watermark: bool = True,
    watermark_key: bytes | None = None,
    ledger: Ledger | None = None,
) -> Verdict:
    """Read one file (and its `.c2pa` sidecar, if there is one) and verify it."""
    path = Path(path)
    data = imageio.read_file(path)
    sidecar_path = path.with_suffix(".c2pa")
    sidecar = imageio.read_file(sidecar_path) if sidecar_path.is_file() else None
    return verify_bytes(
        data,
        name=str(path),
        sidecar=sidecar,
        trust_files=trust_files,
        watermark=watermark,
        watermark_key=watermark_key,
        ledger=ledger,
    )


def verify_bytes(
    data: bytes,
    *,
    name: str,
    sidecar: bytes | None = None,
    trust_files: tuple[str | os.PathLike[str], ...] = (),
    watermark: bool = True,
    watermark_key: bytes | None = None,
    ledger: Ledger | None = None,
) -> Verdict:
    """Verify an image held in memory; `name` labels it in the verdict and in messages.

    `sidecar` is a `.c2pa` manifest store for these bytes, used when they embed none. Raises
    ImageInputError only for bytes that carry no credentials and are not an image guard reads.
    """
    fmt = imageio.sniff(data, name)
    anchors = trust.anchors_pem(trust_files)
    report = c2pa_io.read(data, imageio.MIME[fmt], trust_pem=anchors)
    if report.state == "absent" and sidecar is not None:
        report = c2pa_io.read(data, imageio.MIME[fmt], trust_pem=anchors, sidecar=sidecar)
    verdict = Verdict(
        file=name,
        c2pa=report,
        xmp=xmp.read(data),
        sha256=hashlib.sha256(data).hexdigest(),
        notes=list(report.notes),
    )
    verdict.disagreements = _disagreements(verdict)
    if not watermark and report.state != "absent":
        return verdict  # the manifest has judged the bytes; no pixel is needed
    try:
        loaded = _decode_for_analysis(data, name, watermark)
    except ImageInputError as exc:
        if report.state == "absent":
            raise  # no credentials and no picture: an input error, not a verdict
        verdict.notes.append(
            f"the pixels could not be decoded ({str(exc).removeprefix(name + ': ')})"
        )
        verdict.watermark = _not_checked("the pixels could not be decoded") if watermark else None
        return verdict
    if watermark:
        _check_marks(verdict, loaded, watermark_key, ledger, anchors)
    return verdict


def _decode_for_analysis(data: bytes, name: str, watermark: bool) -> imageio.LoadedImage:
    """Large images are decoded reduced (bounded memory) to what the watermark detector needs."""
    if not watermark:  # only proving that the bytes are an image
        return imageio.decode(data, name, reduce_over=1, min_side=64)
    from guard.watermark.pixels import WORK_SIDE

    return imageio.decode(data, name, reduce_over=FULL_DECODE_PIXELS, min_side=2 * WORK_SIDE)


def _not_checked(reason: str) -> Detection:
    from guard.watermark import Detection

    return Detection(
        found=False,
        payload=None,
        p_value=1.0,
        bit_accuracy=None,
        status="not_checked",
        reason=reason,
    )


def _check_marks(
    verdict: Verdict,
    loaded: imageio.LoadedImage,
    key: bytes | None,
    ledger: Ledger | None,
    anchors: str,
) -> None:
    from guard import watermark as wm

    detection = wm.detect(loaded.image, key=key)
    verdict.watermark = detection
    if loaded.reduced_from:
        w, h = loaded.reduced_from
        verdict.notes.append(
            f"{w}x{h} px was decoded reduced for the watermark check; third-party marks (fragile, "
            "written at generation size) were not checked"
        )
    else:
        verdict.third_party_marks = wm.detect_third_party(loaded.image)
    if detection.found and detection.payload:
        record = _lookup(detection.payload.hex(), ledger)
        if record is not None:
            verdict.ledger = _match(record, verdict.sha256, anchors, loaded.image, detection)


def _lookup(watermark_id: str, ledger: Ledger | None) -> Record | None:
    from guard.ledger import Ledger

    if ledger is not None:
        return ledger.get(watermark_id)
    with Ledger() as own:
        return own.get(watermark_id)


def _match(
    record: Record, sha256: str | None, anchors: str, image: Image.Image, detection: Detection
) -> LedgerMatch:
    manifest = c2pa_io.read_store(record.manifest, trust_pem=anchors) if record.manifest else None
    return LedgerMatch(
        watermark_id=record.watermark_id,
        created_at=record.created_at,
        file_name=record.file_name,
        sha256=record.sha256,
        manifest=manifest,
        file_matches_record=record.sha256 == sha256,
        problem=_unverified(record.watermark_id, manifest),
        content=_content(record, manifest, image, detection),
    )


def _content(
    record: Record,
    manifest: c2pa_io.ManifestReport | None,
    image: Image.Image,
    detection: Detection,
) -> ContentMatch:
    """Compare the picture with the record's: the signed fingerprint first, then the record's
    own, then one rebuilt from its thumbnail (records made before fingerprints)."""
    from guard import fingerprint

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


def _disagreements(v: Verdict) -> list[str]:
    out = []
    c, x = v.c2pa, v.xmp
    if c.state in OK_STATES:
        if (
            x.digital_source_type
            and c.digital_source_type
            and x.digital_source_type != c.digital_source_type
        ):
            out.append(
                f"XMP says the source is '{vocab.source_words(x.digital_source_type)}' but the "
                f"manifest says '{vocab.source_words(c.digital_source_type)}'; trust the manifest"
            )
        if x.training and c.training and x.training != c.training:
            out.append(
                f"XMP DataMining says '{x.training}' but the manifest says '{c.training}'; "
                "trust the manifest"
            )
    return out


def _geometry_words(g: dict[str, Any]) -> str:
    words = []
    scale = g.get("scale") or 1.0
    if abs(scale - 1) > 0.03:
        words.append(f"resized ×{scale:.2f}")
    if abs(g.get("rotation_degrees") or 0.0) > 0.5:
        words.append(f"rotated {g['rotation_degrees']:.0f}°")
    if g.get("mirrored"):
        words.append("mirrored")
    return ", ".join(words)


def _state_gloss(c: c2pa_io.ManifestReport) -> str:
    return {
        "trusted": " — signature valid, signer trusted",
        "valid": " — signature valid, but the signer is not in your trust list",
        "invalid": " — the Content Credentials do not match this file",
        "absent": " — no Content Credentials",
    }[c.state]


def _action_words(action: dict[str, Any]) -> str:
    name = (action.get("action") or "").removeprefix("c2pa.")
    agent = action.get("software_agent")
    return f"{name} ({agent})" if agent else name
