"""The SDK's JSON report of a manifest store → a typed `ManifestReport`. Pure data, no SDK.

A manifest is signed by whoever made it: any field can hold any JSON type. A shape guard must read to
report a claim and cannot is a failure of that file (`guard.assertion.shape`); nothing here raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guard.provenance import manifest as manifest_mod
from guard.provenance import vocab

if TYPE_CHECKING:
    from guard.provenance.remote import RemoteManifest

SHAPE = "guard.assertion.shape"


@dataclass
class Failure:
    code: str
    explanation: str  # the SDK's words
    meaning: str  # plain words

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "meaning": self.meaning, "explanation": self.explanation}


@dataclass
class ManifestReport:
    state: str  # trusted | valid | invalid | remote (a store elsewhere, not read) | absent
    label: str | None = None
    signer: dict[str, str | None] | None = None
    signed_at: str | None = None
    claim_generator: str | None = None
    digital_source_type: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    ingredients: list[dict[str, Any]] = field(default_factory=list)
    training_mining: dict[str, str | None] | None = None
    author: str | None = None
    soft_binding: dict[str, str | None] | None = None
    fingerprint: bytes | None = field(default=None, repr=False)  # the marked picture's own
    assertions: dict[str, Any] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    sidecar: bool = False
    detached: bool = False  # a stored manifest validated on its own, without its asset
    notes: list[str] = field(default_factory=list)  # what the reader noticed besides failures
    remote: RemoteManifest | None = None  # the store the file points to, when not in the file
    store: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def training(self) -> str | None:
        """One summary value: the strictest entry (CAWG, or the legacy c2pa.training-mining)."""
        if not self.training_mining:
            return None
        uses = set(self.training_mining.values())
        for value in ("notAllowed", "constrained", "allowed"):
            if value in uses:
                return value
        return None

    @property
    def signer_name(self) -> str | None:
        return (self.signer or {}).get("subject")

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "manifest": self.label,
            "sidecar": self.sidecar,
            "detached": self.detached,
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
            "remote": self.remote.to_dict() if self.remote else None,
        }


def failure(code: str, explanation: str) -> Failure:
    return Failure(code, explanation, vocab.failure_words(code))


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _seq(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    return (
        value if isinstance(value, str) else str(value) if isinstance(value, int | float) else None
    )


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else "null"
    )


class _Reader:
    """Typed access that notes, rather than raises on, a wrong shape."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if value is not None and not isinstance(value, dict):
            self.problems.append(f"{where} is {_kind(value)}, expected an object")
        return _obj(value)

    def seq(self, value: Any, where: str) -> list[Any]:
        if value is not None and not isinstance(value, list):
            self.problems.append(f"{where} is {_kind(value)}, expected a list")
        return _seq(value)

    def text(self, value: Any, where: str) -> str | None:
        if value is not None and _text(value) is None:
            self.problems.append(f"{where} is {_kind(value)}, expected a string")
        return _text(value)


def parse_store(store: Any) -> ManifestReport:
    """The SDK's JSON report of a store → a ManifestReport (state left `invalid` for the caller)."""
    r = _Reader()
    store = r.obj(store, "the manifest store")
    manifests = r.obj(store.get("manifests"), "manifests")
    label = _text(store.get("active_manifest"))
    active = r.obj(manifests.get(label) if label is not None else None, f"manifest {label}")
    report = ManifestReport(state="invalid", label=label, store=store)

    sig = r.obj(active.get("signature_info"), "signature_info")
    report.signer = {
        "subject": r.text(sig.get("common_name"), "signature_info.common_name"),
        "issuer": r.text(sig.get("issuer"), "signature_info.issuer"),
    }
    report.signed_at = r.text(sig.get("time"), "signature_info.time")
    report.claim_generator = _generator(r, active)
    for i, assertion in enumerate(r.seq(active.get("assertions"), "assertions")):
        assertion = r.obj(assertion, f"assertions[{i}]")
        lab = _text(assertion.get("label")) or ""
        data = assertion.get("data")
        # a label can repeat (two soft bindings: the watermark and the fingerprint); later
        # instances get C2PA's "__n" suffix so none is lost
        key, n = lab, 1
        while key in report.assertions:
            key, n = f"{lab}__{n}", n + 1
        report.assertions[key] = data
        if lab.startswith("c2pa.actions"):
            _actions(r, lab, data, report)
        elif lab in ("cawg.training-mining", "c2pa.training-mining"):
            # c2pa.training-mining is the deprecated C2PA 1.x label (entries "c2pa.ai_training"
            # ...); its entries sit beside the CAWG ones, told apart by their prefix
            entries = r.obj(r.obj(data, lab).get("entries"), f"{lab} entries")
            report.training_mining = {
                **(report.training_mining or {}),
                **{
                    k: r.text(r.obj(v, f"{lab} entry {k}").get("use"), f"{lab} entry {k} use")
                    for k, v in entries.items()
                },
            }
        elif lab == "stds.schema-org.CreativeWork":
            report.author = _authors(r, r.obj(data, lab).get("author"))
        elif lab.split("__")[0] == "c2pa.soft-binding":  # "__1": a second instance
            d = r.obj(data, lab)
            alg = r.text(d.get("alg"), f"{lab} alg")
            if alg == manifest_mod.FINGERPRINT_ALG:
                report.fingerprint = manifest_mod.soft_binding_value(d)
            else:
                report.soft_binding = {"alg": alg, "id": manifest_mod.soft_binding_id(d)}
    report.ingredients = _chain(r, active, manifests, depth=0, seen={label})

    results = r.obj(
        r.obj(store.get("validation_results"), "validation_results").get("activeManifest"),
        "validation_results.activeManifest",
    )
    for f in r.seq(results.get("failure"), "validation failures"):
        f = _obj(f)
        code = _text(f.get("code")) or "general.error"
        report.failures.append(failure(code, _text(f.get("explanation")) or ""))
    report.failures.extend(failure(SHAPE, p) for p in dict.fromkeys(r.problems))
    return report


def _generator(r: _Reader, active: dict[str, Any]) -> str | None:
    info = r.seq(active.get("claim_generator_info"), "claim_generator_info")
    if info:
        gen = r.obj(info[0], "claim_generator_info[0]")
        return f"{_text(gen.get('name'))}/{_text(gen.get('version'))}"
    return r.text(active.get("claim_generator"), "claim_generator")


def _actions(r: _Reader, lab: str, data: Any, report: ManifestReport) -> None:
    for i, a in enumerate(r.seq(r.obj(data, lab).get("actions"), f"{lab} actions")):
        a = r.obj(a, f"{lab} actions[{i}]")
        source = r.text(a.get("digitalSourceType"), f"{lab} digitalSourceType")
        report.actions.append(
            {
                "action": r.text(a.get("action"), f"{lab} action"),
                "digital_source_type": source,
                "software_agent": _agent(a.get("softwareAgent")),
                "when": _text(a.get("when")),
            }
        )
        if source:
            report.digital_source_type = source


def _authors(r: _Reader, value: Any) -> str | None:
    """schema.org allows one author or a list, each a Person/Organization object or a name."""
    items = value if isinstance(value, list) else [] if value is None else [value]
    names = []
    for a in items:
        name = _text(a.get("name")) if isinstance(a, dict) else r.text(a, "CreativeWork author")
        if name:
            names.append(name)
    return ", ".join(names) or None


def _agent(agent: Any) -> str | None:
    if isinstance(agent, dict):
        return " ".join(t for t in (_text(agent.get("name")), _text(agent.get("version"))) if t)
    return _text(agent)


def _chain(
    r: _Reader,
    manifest: dict[str, Any],
    manifests: dict[str, Any],
    depth: int,
    seen: set[str | None],
) -> list[dict[str, Any]]:
    """Flatten the ingredient tree (depth-first) so a report can show the whole history."""
    out: list[dict[str, Any]] = []
    for ing in r.seq(manifest.get("ingredients"), "ingredients"):
        ing = r.obj(ing, "ingredient")
        child = _text(ing.get("active_manifest"))
        entry: dict[str, Any] = {
            "title": _text(ing.get("title")),
            "relationship": _text(ing.get("relationship")),
            "depth": depth,
            "manifest": child,
        }
        out.append(entry)
        sub = manifests.get(child) if child is not None else None
        if child in seen or not isinstance(sub, dict):
            continue
        entry["signer"] = _text(_obj(sub.get("signature_info")).get("common_name"))
        entry["actions"] = [
            _text(_obj(a).get("action"))
            for s in _seq(sub.get("assertions"))
            if (_text(_obj(s).get("label")) or "").startswith("c2pa.actions")
            for a in _seq(_obj(_obj(s).get("data")).get("actions"))
        ]
        out.extend(_chain(r, sub, manifests, depth + 1, seen | {child}))
    return out


def status_codes(store: dict[str, Any], kind: str) -> set[str]:
    """The active manifest's validation codes of one kind: success, informational or failure."""
    results = _obj(_obj(store.get("validation_results")).get("activeManifest"))
    return {c for c in (_obj(e).get("code") for e in _seq(results.get(kind))) if isinstance(c, str)}
