"""The per-image function: bytes in, `ScanRow` out. Every engine calls this and nothing else.

It reads no signal itself. The C2PA manifest, XMP, guard's watermark and its ledger record and
third-party marks come from `guard.verdict` (the code `guard verify` runs), generator metadata
from `guard.provenance.generator_tags`, the downloader's X-Robots-Tag from
`guard.provenance.robots_tag`; the pixels are decoded once, by verify's own decode, and handed
to both. This module only turns
what they report into signals, and the policy turns signals into a decision.

It never raises: a file that cannot be read, or any unexpected failure, becomes an
`unverifiable` row with its reason (fail closed), and the next image goes on.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guard.media.safe_read import FileTooLarge, read_regular
from guard.scan import budget
from guard.scan.item import DEFAULT_MAX_BYTES, Item
from guard.scan.policy import STRICT, Found, Policy
from guard.scan.row import ScanRow
from guard.scan.sources import read_beside

if TYPE_CHECKING:
    from guard.ledger import Ledger
    from guard.media.imageio import LoadedImage
    from guard.resolvers import Limits

# IPTC digital source types that mean "made by a generative model". Others that mention
# algorithms (algorithmicMedia: a formula, no training data; algorithmicallyEnhanced: minor
# correction; compositeSynthetic: may or may not include AI) are reported, not treated as AI.
AI_SOURCE_TERMS = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
OK_STATES = ("trusted", "valid")


@dataclass(frozen=True)
class Settings:
    """Everything a worker needs; small and picklable (sent once to each process or Ray task)."""

    policy: Policy = STRICT
    watermark: bool = True
    watermark_key: bytes | None = None
    trust_files: tuple[str, ...] = ()
    ledger_path: str | None = None  # None: the default ledger (GUARD_LEDGER / GUARD_HOME)
    max_bytes: int = DEFAULT_MAX_BYTES
    user_agent: str | None = None  # X-Robots-Tag directives scoped to this crawler also count
    file_timeout: float | None = budget.DEFAULT_FILE_TIMEOUT  # seconds per image in a worker
    resolvers: tuple[str, ...] = ()  # remote resolvers asked for marks the ledger lacks
    upload_to_resolver: bool = False  # also send them the file (POST /matches/byContent)
    fetch_remote: bool | Limits = False  # fetch a manifest store a file only points to
    # the caller's GUARD_* variables (home, ledger, trust, pixel limit): worker processes are
    # forked from a server started earlier, so they are handed over rather than inherited
    env: dict[str, str] = field(default_factory=lambda: guard_env(), compare=False)

    def __post_init__(self) -> None:
        budget.check(self.file_timeout)

    def apply_env(self) -> None:
        apply_env(self.env)


def guard_env() -> dict[str, str]:
    """This process's GUARD_* variables."""
    return {k: v for k, v in os.environ.items() if k.startswith("GUARD_")}


def apply_env(env: dict[str, str]) -> None:
    """Make this process's GUARD_* variables the caller's (`env`, from `guard_env` there)."""
    for name in [n for n in os.environ if n.startswith("GUARD_") and n not in env]:
        del os.environ[name]
    os.environ.update(env)


_LEDGERS: dict[tuple[int, str], Ledger] = {}


def _ledger(settings: Settings) -> Ledger:
    return ledger_at(settings.ledger_path)


def ledger_at(location: str | None) -> Ledger:
    """One ledger connection per process and location (SQLite connections must not cross a
    fork); None: the default ledger."""
    from guard import config
    from guard.ledger import Ledger

    path = str(config.ledger_location(location))
    key = (os.getpid(), path)
    if key not in _LEDGERS:
        _LEDGERS[key] = Ledger(path)
    return _LEDGERS[key]


def scan_item(item: Item, settings: Settings) -> ScanRow:
    """One image's row. Never raises."""
    row = ScanRow(path=item.path, shard=item.shard, key=item.key)
    found: list[Found] = []
    try:
        _scan(item, settings, row, found)
    except Exception as exc:  # fail closed: any surprise is this file's problem, not the run's
        found.append(Found("scan_error", f"unexpected error: {type(exc).__name__}: {exc}"))
        row.error = row.error or f"{type(exc).__name__}: {exc}"
    row.decision, row.reasons, row.signals = settings.policy.decide(found)
    return row.utf8_safe()


def scan_bytes(
    data: bytes,
    *,
    name: str,
    sidecar: bytes | None = None,
    meta: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> ScanRow:
    """Scan bytes that are not a file on disk (a tar member, an object store, a request)."""
    return scan_item(Item(path=name, data=data, sidecar=sidecar, meta=meta), settings or Settings())


def _scan(item: Item, settings: Settings, row: ScanRow, found: list[Found]) -> None:
    data, sidecar, meta = item.data, item.sidecar, item.meta
    problem = item.problem
    if item.file is not None:
        try:
            data = read_regular(item.file, settings.max_bytes)
        except FileTooLarge as exc:
            item.size = exc.size
        except OSError as exc:
            problem = f"cannot be read ({exc.strerror or exc})"
        if problem is None:
            sidecar, meta, problem = read_beside(item.file)
    _robots(meta, settings, row, found)
    if data is None:
        if item.size is not None:
            row.bytes = item.size
            found.append(
                Found(
                    "too_large",
                    f"{item.size / 2**20:.0f} MB, over the scan's {settings.max_bytes / 2**20:.0f} MB "
                    "limit; not read",
                )
            )
        else:
            found.append(Found("unreadable", problem or "no image data"))
        row.error = found[-1].words
        return
    if problem:
        found.append(Found("unreadable", problem))
    row.bytes = len(data)
    row.sha256 = hashlib.sha256(data).hexdigest()
    loaded = _decode(data, item.path, settings, row, found)
    verdict = _verify(data, item.path, sidecar, settings, loaded, meta)
    if isinstance(verdict, str):
        if loaded is not None:  # the pixels decoded but verify could not read the file
            found.append(Found("unreadable", verdict))
            row.error = verdict
        return
    _verdict_signals(verdict.to_dict(), row, found)


def _robots(meta: dict[str, Any] | None, settings: Settings, row: ScanRow, found: list[Found]):
    """The HTTP opt-outs the downloader recorded: X-Robots-Tag, TDMRep, Content-Usage and
    Content-Signal."""
    from guard.provenance import robots_tag, usage_headers

    values = robots_tag.recorded_values(meta)
    reason = robots_tag.opt_out(meta, settings.user_agent)
    row.x_robots_tag = "; ".join(values) if values else (reason if reason else None)
    if reason:
        found.append(Found("robots_noai", f"opted out when downloaded: {reason}"))
    for signal in usage_headers.signals(meta):
        found.append(Found(signal.code, f"when downloaded: {signal.words}"))


def _decode(
    data: bytes, name: str, settings: Settings, row: ScanRow, found: list[Found]
) -> LoadedImage | None:
    """Decode the pixels (fail closed on anything broken) and read generator metadata. The
    decode is verify's own, handed on to it, so every image is decoded once."""
    from guard.errors import GuardError
    from guard.provenance import generator_tags
    from guard.verdict import decode_for_analysis

    try:
        loaded = decode_for_analysis(data, name, settings.watermark)
    except GuardError as exc:
        message = str(exc).removeprefix(f"{name}: ")
        found.append(Found("unreadable", message))
        row.error = message
        return None
    except (ValueError, OSError, SyntaxError, MemoryError) as exc:  # Pillow's own, past imageio
        message = f"corrupt or hostile image ({type(exc).__name__}: {exc})"
        found.append(Found("unreadable", message))
        row.error = message
        return None
    row.format = loaded.format
    row.width, row.height = loaded.reduced_from or loaded.image.size
    tags = generator_tags.find(loaded.text, generator_tags.software_of(loaded.exif))
    if tags:
        row.generator = ", ".join(dict.fromkeys(t.generator for t in tags))
        for tag in tags:
            found.append(Found("generator_metadata", f"{tag.generator} metadata ({tag.key})"))
    return loaded


def _verify(
    data: bytes,
    name: str,
    sidecar: bytes | None,
    settings: Settings,
    loaded: LoadedImage | None,
    meta: dict[str, Any] | None = None,
):
    """guard's verdict for these bytes (what `guard verify` says), or why there is none. A
    `Link: <URL>; rel="c2pa-manifest"` header the downloader recorded names a remote store."""
    from guard.errors import GuardError
    from guard.provenance import remote, robots_tag
    from guard.resolvers import Resolvers
    from guard.verdict import verify_bytes

    try:
        return verify_bytes(
            data,
            name=name,
            sidecar=sidecar,
            trust_files=settings.trust_files,
            watermark=settings.watermark,
            watermark_key=settings.watermark_key,
            ledger=_ledger(settings),
            loaded=loaded,
            resolvers=Resolvers(settings.resolvers, upload=settings.upload_to_resolver)
            if settings.resolvers
            else None,
            fetch_remote=settings.fetch_remote,
            remote_link=remote.link_target(
                robots_tag.recorded_values(meta, "link"), _text((meta or {}).get("url"))
            ),
        )
    except GuardError as exc:
        return str(exc).removeprefix(f"{name}: ")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _strictest(entries: dict[str, Any] | None, prefix: str) -> str | None:
    uses = {v for k, v in (entries or {}).items() if k.startswith(prefix)}
    return next((v for v in ("notAllowed", "constrained", "allowed") if v in uses), None)


def _term(uri: str | None) -> str | None:
    return uri.rstrip("/").rsplit("/", 1)[-1] if uri else None


def _verdict_signals(d: dict[str, Any], row: ScanRow, found: list[Found]) -> None:
    from guard.provenance import c2pa_io, vocab

    c2pa, xmp = d.get("c2pa") or {}, d.get("xmp") or {}
    state = c2pa.get("state")
    row.c2pa_state = state
    row.c2pa_signer = (c2pa.get("signer") or {}).get("subject")
    row.c2pa_training = _strictest(c2pa.get("training_mining"), "cawg.")
    row.c2pa_legacy_training = _strictest(c2pa.get("training_mining"), "c2pa.")
    row.digital_source_type = d.get("digital_source_type")
    row.training = d.get("training")
    row.xmp_digital_source_type = xmp.get("digital_source_type")
    row.xmp_data_mining = xmp.get("data_mining")

    where = {
        "trusted": "a trusted manifest",
        "valid": "a valid manifest (signer not in the trust list)",
        "invalid": "a manifest that does not match this file",
    }.get(state or "", "the manifest")
    if row.c2pa_signer and state in OK_STATES:
        where += f" signed by {row.c2pa_signer}"
    if state == "invalid":
        failures = c2pa.get("failures") or []
        problems = "; ".join(f.get("meaning", "") for f in failures) or "invalid"
        unchecked = failures and all(f.get("code") in c2pa_io.UNCHECKED for f in failures)
        words = "cannot be checked" if unchecked else "do not match the file"
        found.append(Found("c2pa_invalid", f"Content Credentials {words}: {problems}"))
    if state == "remote":
        found.append(Found("c2pa_remote_unread", _remote_words(c2pa.get("remote") or {})))
    for label, value, prefix in (
        ("cawg.training-mining", row.c2pa_training, "c2pa_training"),
        ("c2pa.training-mining (legacy)", row.c2pa_legacy_training, "c2pa_legacy_training"),
    ):
        if value in ("notAllowed", "constrained"):
            words = vocab.TRAINING_WORDS[value]
            found.append(Found(f"{prefix}_{_suffix(value)}", f"{words}: {label} in {where}"))
    if _term(c2pa.get("digital_source_type")) in AI_SOURCE_TERMS:
        found.append(
            Found(
                "c2pa_ai_source",
                f"{vocab.source_words(c2pa['digital_source_type'])}: digital source type in {where}",
            )
        )
    xmp_training = xmp.get("training")
    if vocab.plus_to_training(row.xmp_data_mining) == vocab.UNREADABLE:
        found.append(
            Found(
                "xmp_training_unreadable",
                f"IPTC PLUS DataMining in XMP holds {row.xmp_data_mining!r}, which is none of "
                "IPTC's terms or labels: the owner's choice cannot be read",
            )
        )
    if xmp_training in ("notAllowed", "constrained"):
        found.append(
            Found(
                f"xmp_training_{_suffix(xmp_training)}",
                f"{vocab.TRAINING_WORDS[xmp_training]}: IPTC PLUS DataMining "
                f"{_term(row.xmp_data_mining)} in XMP",
            )
        )
    if _term(row.xmp_digital_source_type) in AI_SOURCE_TERMS:
        found.append(
            Found(
                "xmp_ai_source",
                f"{vocab.source_words(row.xmp_digital_source_type)}: IPTC DigitalSourceType in XMP",
            )
        )
    _watermark_signals(d, row, found)
    _ledger_claims(d, row, found)
    for mark in d.get("third_party_marks") or []:
        row.third_party_marks.append(mark["name"])
        found.append(
            Found(
                "third_party_ai_mark",
                f"invisible watermark of {mark['name']} (p = {mark['p_value']:.1e})",
            )
        )


def _remote_words(ref: dict[str, Any]) -> str:
    """Why the opt-out of a file whose store is elsewhere could not be read."""
    status, problem = ref.get("status"), ref.get("problem")
    if status == "refused":
        how = f"refused ({problem})"
    elif status == "failed":
        how = f"at {ref.get('url')}, which could not be fetched ({problem})"
    else:
        how = f"at {ref.get('url')}, not fetched (--fetch-remote reads it)"
    return f"Content Credentials only in a remote manifest {how}: its claims were not read"


def _suffix(training: str) -> str:
    return "not_allowed" if training == "notAllowed" else "constrained"


def _watermark_signals(d: dict[str, Any], row: ScanRow, found: list[Found]) -> None:
    w = d.get("watermark")
    ledger = d.get("ledger") or {}
    if not w or w.get("status") == "too_small" or (not w.get("found") and w.get("reason")):
        return  # not checked
    row.watermark_found = bool(w.get("found"))
    if not row.watermark_found:
        return
    row.watermark_id = w.get("id")
    row.watermark_p_value = w.get("p_value")
    row.ledger_match = bool(ledger.get("match"))
    row.content_match = ledger.get("content_match")
    c2pa = d.get("c2pa") or {}
    bound = (
        c2pa.get("state") in OK_STATES
        and (c2pa.get("soft_binding") or {}).get("id") == row.watermark_id
    )
    region = ledger.get("content_region")
    if row.ledger_match and row.content_match is False and region:
        found.append(
            Found(
                "watermark_partial_match",
                f"guard's watermark leads to a record whose picture is only part of this image "
                f"({region['share']:.0%} of its area"
                + (f"; {region['changed_share']:.0%} of it changed" if region["changed"] else "")
                + "): the record's claims are for that part only",
            )
        )
    elif row.ledger_match and row.content_match is False:
        found.append(
            Found(
                "watermark_content_mismatch",
                "guard's watermark matches a record of a different picture: a copied mark, "
                "so the record's claims do not apply",
            )
        )
    elif not row.ledger_match and not bound:
        found.append(
            Found(
                "watermark_unresolved",
                f"guard's watermark {row.watermark_id} is present but no ledger record or "
                "manifest says what it claims",
            )
        )


def _ledger_claims(d: dict[str, Any], row: ScanRow, found: list[Found]) -> None:
    """Top-level facts that neither the file's manifest nor its XMP explain came from the
    ledger record (verify applies those only when the record matches this picture)."""
    from guard.provenance import vocab

    ledger = d.get("ledger") or {}
    if not ledger.get("match"):
        return
    c2pa, xmp = d.get("c2pa") or {}, d.get("xmp") or {}
    who = f"the ledger record of guard's watermark (signed by {ledger.get('signer')})"
    if _term(row.digital_source_type) in AI_SOURCE_TERMS and not (
        _term(c2pa.get("digital_source_type")) in AI_SOURCE_TERMS
        or _term(xmp.get("digital_source_type")) in AI_SOURCE_TERMS
    ):
        found.append(
            Found("ledger_ai_source", f"{vocab.source_words(row.digital_source_type)}: {who}")
        )
    training = row.training
    if training in ("notAllowed", "constrained") and training not in (
        row.c2pa_training,
        row.c2pa_legacy_training,
        xmp.get("training"),
    ):
        found.append(
            Found(
                f"ledger_training_{_suffix(training)}", f"{vocab.TRAINING_WORDS[training]}: {who}"
            )
        )
