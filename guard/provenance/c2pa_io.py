"""The only module that talks to c2pa-python: sign bytes, read and validate bytes.

Settings that matter offline and for small images are fixed here once: no remote manifest
fetch, and no SDK thumbnail (it would upscale small images to 1024 px; guard supplies its own).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guard.errors import SigningError
from guard.provenance import manifest as manifest_mod
from guard.provenance import vocab

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
        with _context() as ctx, c2pa.Reader(mime, io.BytesIO(data), context=ctx):
            return True
    except c2pa.C2paError:
        return False


# -- reading ---------------------------------------------------------------------------------------


@dataclass
class Failure:
    code: str
    explanation: str  # the SDK's words
    meaning: str  # plain words

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "meaning": self.meaning, "explanation": self.explanation}


@dataclass
class ManifestReport:
    state: str  # trusted | valid | invalid | absent
    label: str | None = None
    signer: dict[str, str | None] | None = None
    signed_at: str | None = None
    claim_generator: str | None = None
    digital_source_type: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    ingredients: list[dict[str, Any]] = field(default_factory=list)
    training_mining: dict[str, str] | None = None
    author: str | None = None
    soft_binding: dict[str, str | None] | None = None
    assertions: dict[str, Any] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    sidecar: bool = False
    store: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def training(self) -> str | None:
        """One summary value: the strictest of the CAWG entries."""
        if not self.training_mining:
            return None
        uses = set(self.training_mining.values())
        for value in ("notAllowed", "constrained", "allowed"):
            if value in uses:
                return value
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "manifest": self.label,
            "sidecar": self.sidecar,
            "signer": self.signer,
            "signed_at": self.signed_at,
            "claim_generator": self.claim_generator,
            "digital_source_type": self.digital_source_type,
            "digital_source": vocab.source_words(self.digital_source_type),
            "author": self.author,
            "actions": self.actions,
            "ingredients": self.ingredients,
            "training_mining": self.training_mining,
            "training": self.training,
            "soft_binding": self.soft_binding,
            "failures": [f.to_dict() for f in self.failures],
        }


def read(
    data: bytes, mime: str, *, trust_pem: str | None, sidecar: bytes | None = None
) -> ManifestReport:
    import c2pa

    try:
        with (
            _context(trust_pem) as ctx,
            c2pa.Reader(mime, io.BytesIO(data), manifest_data=sidecar, context=ctx) as reader,
        ):
            store = json.loads(reader.json())
            state = (reader.get_validation_state() or "Invalid").lower()
    except c2pa.C2paError as exc:
        name = type(exc).__name__
        if "ManifestNotFound" in name or "JUMBF" in str(exc) or "NotSupported" in name:
            return ManifestReport(state="absent")
        return ManifestReport(
            state="invalid",
            failures=[
                Failure("manifest.inaccessible", str(exc), vocab.failure_words("general.error"))
            ],
        )
    report = parse_store(store)
    report.state = state if state in ("trusted", "valid", "invalid") else "invalid"
    report.sidecar = sidecar is not None
    return report


def parse_store(store: dict[str, Any]) -> ManifestReport:
    label = store.get("active_manifest")
    manifests = store.get("manifests", {})
    active = manifests.get(label, {})
    report = ManifestReport(state="invalid", label=label, store=store)

    sig = active.get("signature_info") or {}
    report.signer = {"subject": sig.get("common_name"), "issuer": sig.get("issuer")}
    report.signed_at = sig.get("time")
    gen = (active.get("claim_generator_info") or [{}])[0]
    report.claim_generator = (
        f"{gen.get('name')}/{gen.get('version')}" if gen else active.get("claim_generator")
    )
    for assertion in active.get("assertions", []):
        lab, d = assertion.get("label", ""), assertion.get("data", {})
        report.assertions[lab] = d
        if lab.startswith("c2pa.actions"):
            for a in d.get("actions", []):
                report.actions.append(
                    {
                        "action": a.get("action"),
                        "digital_source_type": a.get("digitalSourceType"),
                        "software_agent": _agent(a.get("softwareAgent")),
                        "when": a.get("when"),
                    }
                )
                if a.get("digitalSourceType"):
                    report.digital_source_type = a["digitalSourceType"]
        elif lab == "cawg.training-mining":
            report.training_mining = {
                k: v.get("use") for k, v in d.get("entries", {}).items() if isinstance(v, dict)
            }
        elif lab == "stds.schema-org.CreativeWork":
            authors = d.get("author") or []
            report.author = ", ".join(a.get("name", "") for a in authors if isinstance(a, dict))
        elif lab == "c2pa.soft-binding":
            report.soft_binding = {"alg": d.get("alg"), "id": manifest_mod.soft_binding_id(d)}
    report.ingredients = _chain(active, manifests, depth=0, seen={label})

    results = store.get("validation_results", {}).get("activeManifest", {})
    report.failures = [
        Failure(
            f.get("code", "?"), f.get("explanation", ""), vocab.failure_words(f.get("code", ""))
        )
        for f in results.get("failure", [])
    ]
    return report


def _agent(agent: Any) -> str | None:
    if isinstance(agent, dict):
        return " ".join(str(v) for v in (agent.get("name"), agent.get("version")) if v)
    return agent


def _chain(
    manifest: dict[str, Any], manifests: dict[str, Any], depth: int, seen: set[str | None]
) -> list[dict[str, Any]]:
    """Flatten the ingredient tree (depth-first) so a report can show the whole history."""
    out: list[dict[str, Any]] = []
    for ing in manifest.get("ingredients", []):
        child = ing.get("active_manifest")
        entry: dict[str, Any] = {
            "title": ing.get("title"),
            "relationship": ing.get("relationship"),
            "depth": depth,
            "manifest": child,
        }
        if child in manifests and child not in seen:
            sub = manifests[child]
            sig = sub.get("signature_info") or {}
            entry["signer"] = sig.get("common_name")
            entry["actions"] = [
                a.get("action")
                for s in sub.get("assertions", [])
                if s.get("label", "").startswith("c2pa.actions")
                for a in s.get("data", {}).get("actions", [])
            ]
            out.append(entry)
            out.extend(_chain(sub, manifests, depth + 1, seen | {child}))
        else:
            out.append(entry)
    return out
