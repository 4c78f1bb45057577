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

from guard.errors import ImageInputError
from guard.identity import trust
from guard.ledger import match as ledger_match
from guard.media import imageio
from guard.media.formats import MIME
from guard.provenance import c2pa_io, remote_fetch, vocab, xmp

if TYPE_CHECKING:
    from guard.ledger import Ledger
    from guard.ledger.fingerprint import Region
    from guard.resolvers import Answer, Limits, Resolvers
    from guard.watermark import Detection, ThirdPartyMark

SCHEMA_VERSION = 1
OK_STATES = ("trusted", "valid")
# Above this many pixels an image is decoded reduced for the watermark (which works at a 512 px
# short side) and the fragile third-party marks, which only survive at full size, are not checked.
FULL_DECODE_PIXELS = 4096 * 2048  # 8.4 MP: above native generation sizes (SDXL 1 MP, hires 4 MP)


@dataclass
class Verdict:
    file: str
    c2pa: c2pa_io.ManifestReport
    xmp: xmp.XmpFacts = field(default_factory=xmp.XmpFacts)
    watermark: Detection | None = None  # None: not asked for (watermark=False)
    ledger: ledger_match.LedgerMatch | None = None
    third_party_marks: list[ThirdPartyMark] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why
    sha256: str | None = None
    resolvers: list[Answer] = field(default_factory=list)  # what each resolver asked said

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
        if c.remote and c.remote.status == "fetched":
            lines.append(f"  manifest store: fetched from {c.remote.url}")
        if c.state not in ("absent", "remote"):
            if c.signer_name:
                lines.append(
                    f"  signed by: {c.signer_name} (issuer: {(c.signer or {}).get('issuer')})"
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
            lines = [f"  watermark: {'not checked: ' + w.reason if w.reason else 'none found'}"]
            if not self.ledger:  # resolvers are asked without a mark only for an upload
                return [*lines, *self._resolver_lines()]
        else:
            lines = [f"  watermark: found (p = {w.p_value:.1e}), ID {w.id}"]
            changes = _geometry_words(w.geometry or {})
            if changes:
                lines.append(f"    this copy was {changes} since it was marked")
            if not self.ledger:
                lines.append("    no record for this ID in the local ledger")
                return [*lines, *self._resolver_lines()]
        m = self.ledger
        day = str(m.created_at)[:10] or "an unknown date"
        if m.resolver:
            lines.append(f"    record returned by the resolver {m.resolver}, checked here:")
        if not m.verified:
            lines.append(f"    matches a record made on {day}, but the record is UNVERIFIED:")
            lines.append(f"    {m.problem}; none of its claims are used")
            return lines
        region = m.content_region
        if m.content_match is False and region is not None:
            return [*lines, *_region_words(region, day)]
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
                f"    metadata was stripped: this match comes from {_found_by(w)}, not from a"
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
            "resolvers": [a.to_dict() for a in self.resolvers],
        }

    def _resolver_lines(self) -> list[str]:
        out = []
        for a in self.resolvers:
            said = {
                "no_match": f"knows no record for this {'picture' if a.uploaded else 'ID'}",
                "failed": f"could not be used ({a.problem})",
                "rejected": f"returned a record that does not verify ({a.problem})",
                "not_applied": f"returned a record whose claims do not apply ({a.problem})",
            }.get(a.status, a.status)
            out.append(f"    resolver {a.url}: {said}")
        return out


def verify(
    path: str | os.PathLike[str],
    *,
    trust_files: tuple[str | os.PathLike[str], ...] = (),
    watermark: bool = True,
    watermark_key: bytes | None = None,
    ledger: Ledger | None = None,
    resolvers: Resolvers | None = None,
    fetch_remote: bool | Limits = False,
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
        resolvers=resolvers,
        fetch_remote=fetch_remote,
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
    loaded: imageio.LoadedImage | None = None,
    resolvers: Resolvers | None = None,
    fetch_remote: bool | Limits = False,
    remote_link: str | None = None,
) -> Verdict:
    """Verify an image held in memory; `name` labels it in the verdict and in messages.

    `sidecar` is a `.c2pa` manifest store for these bytes, used when they embed none. `loaded`:
    these bytes already decoded by `decode_for_analysis` (scan reads their text and size too),
    so they are not decoded twice. `resolvers`: asked when the local ledger has no record for a
    found mark (guard.resolvers; their records are checked like local ones). `fetch_remote`: a
    store the file only points to (XMP dcterms:provenance, or `remote_link`, the target of a
    `rel="c2pa-manifest"` Link header it was downloaded with) is fetched with the resolvers'
    bounded client and validated against these bytes (True, or the `Limits` to fetch under);
    without it the verdict is `remote`, not fetched. Raises ImageInputError only for bytes that
    carry no credentials and are not an image guard reads.
    """
    fmt = imageio.sniff(data, name)
    anchors = trust.anchors_pem(trust_files)
    report = c2pa_io.read(data, MIME[fmt], trust_pem=anchors)
    if report.state in ("absent", "remote") and sidecar is not None:
        report = c2pa_io.read(data, MIME[fmt], trust_pem=anchors, sidecar=sidecar)
    if report.state in ("absent", "remote"):
        report = remote_fetch.follow(
            report, data, MIME[fmt], trust_pem=anchors, fetch=fetch_remote, link=remote_link
        )
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
        loaded = loaded or decode_for_analysis(data, name, watermark)
    except ImageInputError as exc:
        if report.state == "absent":
            raise  # no credentials and no picture: an input error, not a verdict
        verdict.notes.append(
            f"the pixels could not be decoded ({str(exc).removeprefix(name + ': ')})"
        )
        verdict.watermark = _not_checked("the pixels could not be decoded") if watermark else None
        return verdict
    if watermark:
        upload = (data, MIME[fmt])  # sent to a resolver only when resolvers.upload allows it
        _check_marks(verdict, loaded, watermark_key, ledger, anchors, resolvers, upload)
    return verdict


def decode_for_analysis(data: bytes, name: str, watermark: bool) -> imageio.LoadedImage:
    """The pixels verify looks at: large images are decoded reduced (bounded memory) to what the
    watermark detector needs, and only enough to prove they decode when it is off."""
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
    resolvers: Resolvers | None = None,
    upload: tuple[bytes, str] | None = None,
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
    found = bool(detection.found and detection.payload)
    if found:
        verdict.ledger = ledger_match.find(
            detection, loaded.image, sha256=verdict.sha256, ledger=ledger, anchors=anchors
        )
    # no record here: the resolvers, for the mark read (or, when the user allowed the upload,
    # for the picture itself, by content)
    if verdict.ledger is None and resolvers is not None and (found or resolvers.upload):
        verdict.ledger, verdict.resolvers = ledger_match.resolve(
            detection,
            loaded.image,
            sha256=verdict.sha256,
            anchors=anchors,
            resolvers=resolvers,
            upload=upload,
        )
        verdict.notes.extend(
            f"the resolver {a.url} could not be used: {a.problem}"
            for a in verdict.resolvers
            if a.status == "failed"
        )
        sent = [a.url for a in verdict.resolvers if a.uploaded]
        if sent:
            verdict.notes.append(
                f"this file was uploaded to {', '.join(sent)} (--upload-to-resolver)"
            )


def _found_by(w: Detection) -> str:
    return "the watermark" if w.found else "a resolver's search by the picture's content"


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
    if c.state == "invalid" and c.failures and all(f.code in c2pa_io.UNCHECKED for f in c.failures):
        return " — the Content Credentials could not be checked"
    if c.state == "remote" and c.remote:
        return " — " + c.remote.words()
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


def _region_words(region: Region, day: str) -> list[str]:
    """A record's picture in part of the copy only: where it is, and that the rest is not."""
    x0, y0, x1, y1 = region.box
    out = [f"    points to a record made on {day}, whose picture is only PART of this one:"]
    if region.other_share > 0:
        out.append(
            f"    it covers ({x0},{y0})-({x1},{y1}), {region.share:.0%} of this picture; the rest "
            f"({region.other_share:.0%} with detail of its own) is not from that record"
        )
    else:
        out.append(f"    it covers ({x0},{y0})-({x1},{y1}), {region.share:.0%} of this picture")
    if region.changed:
        boxes = ", ".join(f"({a},{b})-({c},{d})" for a, b, c, d in region.changed[:4])
        more = f" and {len(region.changed) - 4} more" if len(region.changed) > 4 else ""
        out.append(
            f"    and {region.changed_share:.0%} of the record's picture was changed here: "
            f"{boxes}{more}"
        )
    out.append("    the record's claims are for that part only, not for this picture")
    return out
