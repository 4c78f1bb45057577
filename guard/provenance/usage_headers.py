"""The other HTTP opt-outs a downloader may have recorded beside X-Robots-Tag, each read by its
own standard's grammar:

- TDMRep (W3C TDM Reservation Protocol, CG final report): `tdm-reservation: 1` reserves text and
  data mining rights; `tdm-policy` names the licence that may lift the reservation;
- IETF AI preferences (draft-ietf-aipref-attach-05, vocab-07): `Content-Usage`, an RFC 9651
  structured-field dictionary; `train-ai=n` says no AI training. The drafts' earlier label
  `train-genai` (02-03) is read too;
- Cloudflare's Content Signals: `Content-Signal: ai-train=no, search=yes, ai-input=no`.

A value that is there but cannot be read is reported as unreadable, so scan calls the image
unverifiable rather than allowed. TDMRep says a protocol error leaves the reservation unset, and
aipref says an unparsable field states no preference; guard fails closed instead, since the
header was sent to say something about this picture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guard.provenance.robots_tag import recorded_values

TDM_RESERVATION, TDM_POLICY = "tdm-reservation", "tdm-policy"
CONTENT_USAGE, CONTENT_SIGNAL = "content-usage", "content-signal"
AIPREF_TRAINING_LABELS = ("train-ai", "train-genai")


@dataclass(frozen=True)
class UsageSignal:
    code: (
        str  # tdm_reserved, aipref_train_ai_n, content_signal_ai_train_no, usage_header_unreadable
    )
    words: str


def signals(meta: Mapping[str, Any] | None) -> list[UsageSignal]:
    """Every opt-out (or unreadable opt-out) these headers record for a sample."""
    if not meta:
        return []
    return [s for s in (_tdmrep(meta), _content_usage(meta), _content_signal(meta)) if s]


def _unreadable(header: str, values: list[str], why: str) -> UsageSignal:
    shown = "; ".join(values)[:200]
    return UsageSignal("usage_header_unreadable", f"{header}: {shown!r} {why}")


def _tdmrep(meta: Mapping[str, Any]) -> UsageSignal | None:
    values = [v.strip() for v in recorded_values(meta, TDM_RESERVATION)]
    if not values:
        return None
    if "1" in values:
        policies = [p.strip() for p in recorded_values(meta, TDM_POLICY) if p.strip()]
        licence = f" (licence offered at {policies[0]})" if policies else ""
        return UsageSignal("tdm_reserved", f"TDMRep tdm-reservation: 1{licence}")
    if all(v == "0" for v in values):
        return None
    return _unreadable("tdm-reservation", values, "is neither 1 nor 0")


def _content_usage(meta: Mapping[str, Any]) -> UsageSignal | None:
    import http_sf

    values = recorded_values(meta, CONTENT_USAGE)
    if not values:
        return None
    try:  # field lines combine with commas before parsing (RFC 9651, section 4.2)
        parsed = http_sf.parse(", ".join(values).encode("utf-8"), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeEncodeError):
        return _unreadable("Content-Usage", values, "is not a structured-field dictionary")
    assert isinstance(parsed, dict)
    for label in AIPREF_TRAINING_LABELS:
        entry = parsed.get(label)  # parse gives (value, parameters); its types allow a bare value
        value = entry[0] if isinstance(entry, tuple) else entry
        if isinstance(value, http_sf.Token) and value == "n":  # only the token n: no
            return UsageSignal("aipref_train_ai_n", f"Content-Usage: {label}=n")
    return None


def _content_signal(meta: Mapping[str, Any]) -> UsageSignal | None:
    values = recorded_values(meta, CONTENT_SIGNAL)
    if not values:
        return None
    said: dict[str, list[str]] = {}
    for part in ",".join(values).split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            return _unreadable("Content-Signal", values, "is not a list of name=yes|no")
        said.setdefault(key.strip().lower(), []).append(value.strip().lower())
    train = said.get("ai-train", [])
    if "no" in train:  # said twice, differently: the owner's no counts
        return UsageSignal("content_signal_ai_train_no", "Content-Signal: ai-train=no")
    if any(v != "yes" for v in train):
        return _unreadable("Content-Signal", values, "says ai-train is neither yes nor no")
    return None
