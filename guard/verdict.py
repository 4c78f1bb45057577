"""One answer per file: combines the C2PA manifest, XMP, guard's watermark + ledger and
third-party marks into a `Verdict`. It decides nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard import imageio, trust
from guard.provenance import c2pa_io, vocab, xmp

if TYPE_CHECKING:
    from guard.ledger import Ledger, Record

SCHEMA_VERSION = 1
OK_STATES = ("trusted", "valid")


@dataclass
class LedgerMatch:
    """A record found through the watermark: a lookup, not a cryptographic binding."""

    watermark_id: str
    signer: str | None
    created_at: str
    file_name: str | None
    sha256: str | None
    summary: dict[str, Any]
    manifest: c2pa_io.ManifestReport | None
    file_matches_record: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "match": True,
            "binding": "watermark",
            "watermark_id": self.watermark_id,
            "signer": self.signer,
            "signed_at": self.created_at,
            "file_name": self.file_name,
            "sha256": self.sha256,
            "file_matches_record": self.file_matches_record,
            "digital_source_type": self.summary.get("digital_source_type"),
            "digital_source": vocab.source_words(self.summary.get("digital_source_type")),
            "training": self.summary.get("training"),
            "author": self.summary.get("author"),
            "manifest": self.manifest.to_dict() if self.manifest else None,
        }


@dataclass
class Verdict:
    file: str
    c2pa: c2pa_io.ManifestReport
    xmp: xmp.XmpFacts = field(default_factory=xmp.XmpFacts)
    watermark: dict[str, Any] | None = None
    ledger: LedgerMatch | None = None
    third_party_marks: list[dict[str, Any]] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    sha256: str | None = None

    @property
    def state(self) -> str:
        return self.c2pa.state

    @property
    def ok(self) -> bool:
        return self.c2pa.state in OK_STATES

    @property
    def training(self) -> str | None:
        """What the file says about AI training, from the strongest source that says anything."""
        if self.c2pa.state in OK_STATES and self.c2pa.training:
            return self.c2pa.training
        if self.ledger and self.ledger.summary.get("training"):
            return self.ledger.summary["training"]
        return self.xmp.training or self.c2pa.training

    @property
    def digital_source_type(self) -> str | None:
        if self.c2pa.digital_source_type:
            return self.c2pa.digital_source_type
        if self.ledger:
            return self.ledger.summary.get("digital_source_type")
        return self.xmp.digital_source_type

    def summary(self) -> list[str]:
        """The short human report, one fact per line."""
        c = self.c2pa
        lines = [f"{self.file}: {c.state.upper()}" + _state_gloss(c)]
        if c.state != "absent":
            if c.signer and c.signer.get("subject"):
                lines.append(
                    f"  signed by: {c.signer['subject']} (issuer: {c.signer.get('issuer')})"
                )
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
        lines.extend(self._watermark_lines())
        for mark in self.third_party_marks:
            lines.append(
                f"  third-party mark: {mark['name']} (bit agreement {mark['bit_agreement']:.2f}, "
                f"p = {mark['p_value']:.1e}; a fragile mark)"
            )
        return lines

    def _watermark_lines(self) -> list[str]:
        w = self.watermark
        if w is None:
            return []
        if not w.get("found"):
            reason = w.get("reason")
            return [f"  watermark: {'not checked: ' + reason if reason else 'none found'}"]
        lines = [f"  watermark: found (p = {w['p_value']:.1e}), ID {w['id']}"]
        changes = _geometry_words(w.get("geometry") or {})
        if changes:
            lines.append(f"    this copy was {changes} since it was marked")
        if not self.ledger:
            return [*lines, "    no record for this ID in the local ledger"]
        m = self.ledger
        lines.append(f"    matches a record signed by {m.signer} on {m.created_at[:10]}")
        facts = [vocab.source_words(m.summary.get("digital_source_type"))]
        facts.append(vocab.TRAINING_WORDS.get(m.summary.get("training") or "", None))
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
            "watermark": self.watermark,
            "ledger": self.ledger.to_dict() if self.ledger else {"match": False},
            "third_party_marks": self.third_party_marks,
        }


def verify(
    path: str | os.PathLike[str],
    *,
    trust_files: tuple[str | os.PathLike[str], ...] = (),
    watermark: bool = True,
    watermark_key: bytes | None = None,
    ledger: Ledger | None = None,
) -> Verdict:
    """Read and validate one file. Raises ImageInputError for files that are not images."""
    import hashlib

    path = Path(path)
    loaded = imageio.load(path)
    anchors = trust.anchors_pem(trust_files)
    sidecar_path = path.with_suffix(".c2pa")
    report = c2pa_io.read(loaded.data, loaded.mime, trust_pem=anchors)
    if report.state == "absent" and sidecar_path.is_file():
        report = c2pa_io.read(
            loaded.data, loaded.mime, trust_pem=anchors, sidecar=sidecar_path.read_bytes()
        )
    verdict = Verdict(
        file=str(path),
        c2pa=report,
        xmp=xmp.read(loaded.data),
        sha256=hashlib.sha256(loaded.data).hexdigest(),
    )
    verdict.disagreements = _disagreements(verdict)
    if watermark:
        _check_marks(verdict, loaded, watermark_key, ledger, anchors)
    return verdict


def _check_marks(
    verdict: Verdict,
    loaded: imageio.LoadedImage,
    key: bytes | None,
    ledger: Ledger | None,
    anchors: str,
) -> None:
    from guard import watermark as wm

    detection = wm.detect(loaded.image, key=key)
    verdict.watermark = detection.to_dict()
    verdict.third_party_marks = [m.to_dict() for m in wm.detect_third_party(loaded.image)]
    if detection.found and detection.payload:
        record = _lookup(detection.payload.hex(), ledger)
        if record is not None:
            verdict.ledger = _match(record, verdict.sha256, anchors)


def _lookup(watermark_id: str, ledger: Ledger | None) -> Record | None:
    from guard.ledger import Ledger

    if ledger is not None:
        return ledger.get(watermark_id)
    with Ledger() as own:
        return own.get(watermark_id)


def _match(record: Record, sha256: str | None, anchors: str) -> LedgerMatch:
    manifest = None
    if record.manifest:
        manifest = c2pa_io.read(
            record.manifest, "application/c2pa", trust_pem=anchors, sidecar=None
        )
    return LedgerMatch(
        watermark_id=record.watermark_id,
        signer=record.signer,
        created_at=record.created_at,
        file_name=record.file_name,
        sha256=record.sha256,
        summary=record.summary,
        manifest=manifest,
        file_matches_record=record.sha256 == sha256,
    )


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
