"""A verify card: the `guard verify --json` object for one upload, plus the same facts in plain
words and the thumbnails a page shows (inline data: URLs, so nothing is stored or fetched).

The JSON is `Verdict.to_dict()` unchanged; `card` only rephrases it and adds pictures.
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

from guard.provenance import c2pa_io, vocab

if TYPE_CHECKING:
    from guard.ledger import Ledger
    from guard.verdict import Verdict

HEADLINES = {
    "trusted": "Trusted",
    "valid": "Valid, but the signer is not trusted here",
    "invalid": "Invalid",
    "absent": "No Content Credentials",
}
# IPTC digital source type term -> is the picture AI-generated?
AI_ANSWERS = {
    "trainedAlgorithmicMedia": "yes",
    "compositeWithTrainedAlgorithmicMedia": "partly",
    "algorithmicallyEnhanced": "enhanced",
}


def card(verdict: Verdict, data: bytes, ledger: Ledger) -> dict[str, Any]:
    out = verdict.to_dict()
    c2pa = out["c2pa"]
    state = c2pa["state"]
    match = out["ledger"] if out["ledger"].get("match") else None
    own = _thumbnails(data) if state != "absent" else {}
    out["card"] = {
        "state": state,
        "headline": HEADLINES.get(state, state),
        "reason": _reason(state, c2pa),
        "signer": _signer(c2pa, match),
        "ai": _ai(out.get("digital_source_type")),
        "training": {
            "value": out.get("training"),
            "words": vocab.TRAINING_WORDS.get(out.get("training") or "", "no statement"),
        },
        "timeline": _timeline(c2pa, own, verdict.file) if state != "absent" else [],
        "watermark": _watermark(out.get("watermark")),
        "ledger": _ledger(match, ledger, data) if match else None,
        "marks": [_mark_words(m) for m in out.get("third_party_marks") or []],
        "disagreements": list(out.get("disagreements") or []),
        "summary": verdict.summary(),
    }
    return out


def _reason(state: str, c2pa: dict[str, Any]) -> str:
    if state == "trusted":
        return "The signature is valid and the signer is in this server's trust list."
    if state == "valid":
        return (
            "The signature is valid, but the signer is not in this server's trust list: the "
            "file is unchanged since it was signed, but anyone can make such a signer."
        )
    if state == "invalid":
        reasons = [f.get("meaning") or f.get("code") for f in c2pa.get("failures") or []]
        # an untrusted signer is not why a changed file is invalid: lead with the real cause
        reasons.sort(key=lambda r: "trust" in (r or ""))
        words = "; ".join(dict.fromkeys(r for r in reasons if r))
        return "The Content Credentials do not match this file: " + (words or "unknown reason")
    return "This file carries no Content Credentials (none were made, or they were stripped)."


def _signer(c2pa: dict[str, Any], match: dict[str, Any] | None) -> dict[str, Any] | None:
    sig = c2pa.get("signer") or {}
    if c2pa.get("state") != "absent" and sig.get("subject"):
        return {"name": sig["subject"], "issuer": sig.get("issuer"), "from": "manifest"}
    if match and match.get("signer"):  # verify names a signer only when the record applies
        return {"name": match["signer"], "issuer": None, "from": "ledger record"}
    return None


def _ai(source_uri: str | None) -> dict[str, Any]:
    if not source_uri:
        return {"answer": "unknown", "words": "no statement about how it was made"}
    term = source_uri.rstrip("/").rsplit("/", 1)[-1]
    return {"answer": AI_ANSWERS.get(term, "no"), "words": vocab.source_words(source_uri)}


def _timeline(c2pa: dict[str, Any], thumbs: dict[str, bytes], name: str) -> list[dict[str, Any]]:
    """Oldest first: the deepest ingredients, then their children, then this file."""
    steps = []
    ingredients = sorted(
        enumerate(c2pa.get("ingredients") or []), key=lambda p: (-p[1].get("depth", 0), p[0])
    )
    for _, ing in ingredients:
        steps.append(
            {
                "title": ing.get("title"),
                "relationship": ing.get("relationship"),
                "signer": ing.get("signer"),
                "actions": [_action_name(a) for a in ing.get("actions") or []],
                "thumbnail": _data_url(thumbs.get(ing.get("manifest") or "")),
                "current": False,
            }
        )
    steps.append(
        {
            "title": name,
            "relationship": None,
            "signer": (c2pa.get("signer") or {}).get("subject"),
            "actions": [
                _action_name(a.get("action"))
                + (f" ({a['software_agent']})" if a.get("software_agent") else "")
                for a in c2pa.get("actions") or []
            ],
            "thumbnail": _data_url(thumbs.get(c2pa.get("manifest") or "")),
            "current": True,
        }
    )
    return steps


def _watermark(w: dict[str, Any] | None) -> dict[str, Any] | None:
    if not w:
        return None
    if not w.get("found"):
        reason = w.get("reason")
        return {"found": False, "words": f"not checked: {reason}" if reason else "none found"}
    return {
        "found": True,
        "id": w.get("id"),
        "words": f"guard's watermark found (ID {w.get('id')}, p = {w.get('p_value', 0):.1e})",
    }


def _ledger(match: dict[str, Any], ledger: Ledger, data: bytes) -> dict[str, Any]:
    """The record the watermark leads to. Its claims are this file's only when verify applied
    them (its manifest verified and the picture is the record's picture); otherwise the card
    says why not, and shows no claim."""
    record = ledger.get(match["watermark_id"])
    content = match.get("content_match")
    if match.get("verified") is False:
        words = (
            "The watermark leads to a record whose manifest does not verify"
            + (f" ({match['problem']})" if match.get("problem") else "")
            + ": its claims are not applied to this file."
        )
    elif content is False and match.get("content_region"):
        region = match["content_region"]
        words = (
            f"The watermark leads to a record whose picture is only part of this one "
            f"({region['share']:.0%} of its area, at {tuple(region['box'])})"
            + (
                f"; {region['changed_share']:.0%} of the record's picture was changed"
                if region["changed"]
                else ""
            )
            + ". The record's claims are for that part only, not for this picture."
        )
    elif content is False:
        words = (
            "The watermark belongs to another picture: it was copied onto this one, so the "
            "record's claims do not apply to this file."
        )
    elif content is None and "content_match" in match:
        why = match.get("content_problem")
        words = (
            "The watermark leads to a record, but this picture could not be compared with the "
            "record's" + (f" ({why})" if why else "") + ": its claims are not applied."
        )
    else:
        facts = [match.get("digital_source"), vocab.TRAINING_WORDS.get(match.get("training") or "")]
        words = f"Matches a record signed by {match.get('signer') or 'an unknown signer'}" + (
            f" on {match['signed_at'][:10]}" if match.get("signed_at") else ""
        )
        said = ", ".join(f for f in facts if f)
        words += f"; the record says: {said}." if said else "."
        if content is True:
            words += " The picture is the record's picture."
        if not match.get("file_matches_record"):
            words += " This copy is not the signed file (metadata stripped or re-encoded)."
    return {
        "signer": match.get("signer"),
        "signed_at": match.get("signed_at"),
        "file_name": match.get("file_name"),
        "content_match": content,
        "content_region": _region_overlay(match.get("content_region"), data),
        "words": words,
        "thumbnail": _data_url(record.thumbnail if record else None),
    }


def _mark_words(mark: dict[str, Any]) -> str:
    return (
        f"{mark.get('name')}: bit agreement {mark.get('bit_agreement', 0):.2f}, "
        f"p = {mark.get('p_value', 0):.1e}" + (" (a fragile mark)" if mark.get("fragile") else "")
    )


def _action_name(action: str | None) -> str:
    return (action or "").removeprefix("c2pa.")


def _thumbnails(data: bytes) -> dict[str, bytes]:
    mime = _mime(data)
    return c2pa_io.thumbnails(data, mime) if mime else {}


def _mime(data: bytes) -> str | None:
    from PIL import Image

    from guard.media.formats import MIME

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = "JPEG" if im.format == "MPO" else im.format
    except Exception:
        return None
    return MIME.get(fmt or "")


def _data_url(jpeg: bytes | None) -> str | None:
    if not jpeg:
        return None
    kind = "png" if jpeg[:4] == b"\x89PNG" else "jpeg"
    return f"data:image/{kind};base64," + base64.b64encode(jpeg).decode()


def _region_overlay(region: dict[str, Any] | None, data: bytes) -> dict[str, Any] | None:
    """The record's region and the changed blocks as shares of the picture's width and height,
    so the page can draw them over its own thumbnail of the upload at any size."""
    if not region:
        return None
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:  # the header only: the size
            w, h = im.size
    except Exception:  # verify already read this file; a size it cannot tell draws nothing
        return dict(region)

    def share(box: list[int]) -> list[float]:
        x0, y0, x1, y1 = box
        return [
            round(x0 / w, 4),
            round(y0 / h, 4),
            round((x1 - x0) / w, 4),
            round((y1 - y0) / h, 4),
        ]

    return {
        **region,
        "overlay": {
            "region": share(region["box"]),
            "changed": [share(b) for b in region["changed"]],
        },
    }
