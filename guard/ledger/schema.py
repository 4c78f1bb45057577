"""What a ledger export line may hold, checked before anything reaches the ledger.

`guard ledger import` reads JSONL written elsewhere, possibly by an attacker, so every line is
checked against a strict schema: known keys only, types, the ID format, sizes, and nesting
depth; then each stored manifest must verify on its own and bind the record's watermark ID.
Hand-written rather than a schema library: the rules are few, and the messages name the line
and field so a user can fix the file.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

from guard.ledger.record import ID_PATTERN, LedgerError, Record, normalise_id

MAX_LINE = 24 * 2**20  # characters; a manifest of MAX_MANIFEST bytes in base64 fits
MAX_MANIFEST = 16 * 2**20
MAX_THUMBNAIL = 2**20
MAX_FINGERPRINT = 64 * 2**10
MAX_TEXT = 1024
MAX_SUMMARY = 64 * 2**10  # bytes of JSON
MAX_DEPTH = 3  # summary -> list/dict -> value
MAX_RECORDS = 1_000_000
SHA256 = re.compile(r"^[0-9a-f]{64}$")
TEXT_FIELDS = ("signer", "file_name", "manifest_label")
BINARY_LIMITS = {
    "manifest": MAX_MANIFEST,
    "thumbnail": MAX_THUMBNAIL,
    "fingerprint": MAX_FINGERPRINT,
}
# Judgements made by the machine that imports (origin, verified) are accepted and ignored.
KNOWN = {"watermark_id", "created_at", "sha256", "summary", "origin", "verified"}
KNOWN |= set(TEXT_FIELDS) | set(BINARY_LIMITS)


class SchemaError(ValueError):
    pass


def record_fields(obj: Any) -> dict[str, Any]:
    """The keyword arguments for Record, from one decoded export line; SchemaError if invalid."""
    if not isinstance(obj, dict):
        raise SchemaError(f"a record is a JSON object, not {type(obj).__name__}")
    unknown = sorted(set(obj) - KNOWN)
    if unknown:
        raise SchemaError(f"unknown field '{unknown[0]}'")
    wid = obj.get("watermark_id")
    if not isinstance(wid, str) or not ID_PATTERN.match(normalise_id(wid)):
        raise SchemaError("watermark_id must be 16 hex digits")
    out: dict[str, Any] = {"watermark_id": normalise_id(wid)}
    created = obj.get("created_at")
    if created is not None:
        if not isinstance(created, str) or len(created) > 64:
            raise SchemaError("created_at must be an ISO 8601 time")
        try:
            dt.datetime.fromisoformat(created)
        except ValueError:
            raise SchemaError("created_at must be an ISO 8601 time") from None
        out["created_at"] = created
    for key in TEXT_FIELDS:
        value = obj.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise SchemaError(f"{key} must be text of at most {MAX_TEXT} characters")
        if isinstance(value, str) and any(ord(c) < 32 for c in value):
            raise SchemaError(f"{key} must not contain control characters")
        out[key] = value
    sha = obj.get("sha256")
    if sha is not None:
        if not isinstance(sha, str) or not SHA256.match(sha.lower()):
            raise SchemaError("sha256 must be 64 hex digits")
        sha = sha.lower()
    out["sha256"] = sha
    for key, limit in BINARY_LIMITS.items():
        out[key] = _base64(obj.get(key), key, limit)
    summary = obj.get("summary", {})
    if summary is None:
        summary = {}
    if not isinstance(summary, dict):
        raise SchemaError("summary must be a JSON object")
    _check_value(summary, "summary", 1)
    if len(json.dumps(summary)) > MAX_SUMMARY:
        raise SchemaError(f"summary is larger than {MAX_SUMMARY} bytes")
    out["summary"] = summary
    return out


def _base64(value: Any, key: str, limit: int) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > (limit // 3 + 1) * 4:
        raise SchemaError(f"{key} must be base64 of at most {limit} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SchemaError(f"{key} is not valid base64") from None
    return data or None


def _check_value(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise SchemaError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for k, v in value.items():
            if len(k) > 64:
                raise SchemaError(f"{where} has a key longer than 64 characters")
            _check_value(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_value(v, where, depth + 1)
    elif isinstance(value, str):
        if len(value) > 4096:
            raise SchemaError(f"{where} is longer than 4096 characters")
    elif not (value is None or isinstance(value, (bool, int, float))):
        raise SchemaError(f"{where} has a value of an unexpected type")


def read_export(path: str | os.PathLike[str]) -> list[tuple[int, Record]]:
    """Every record of an export file with its line number; LedgerError names the first bad line."""
    try:
        size = Path(path).stat().st_size
        if size > MAX_LINE * 64:
            raise LedgerError(f"{path}: too large for a ledger export ({size} bytes)")
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LedgerError(f"{path}: not UTF-8 text; nothing was imported") from exc
    except OSError as exc:
        raise LedgerError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    records: list[tuple[int, Record]] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            if len(line) > MAX_LINE:
                raise SchemaError(f"line longer than {MAX_LINE} characters")
            try:
                obj = json.loads(line)
            except RecursionError:
                raise SchemaError("JSON nested too deeply") from None
            except ValueError as exc:
                raise SchemaError(f"not JSON ({exc})") from None
            record = Record(**record_fields(obj))
        except SchemaError as exc:
            raise LedgerError(
                f"{path}:{n}: not a valid guard ledger record ({exc}); nothing was imported"
            ) from None
        if record.watermark_id in seen:
            raise LedgerError(
                f"{path}:{n}: watermark ID {record.watermark_id} already appears on line "
                f"{seen[record.watermark_id]}; nothing was imported"
            )
        seen[record.watermark_id] = n
        records.append((n, record))
        if len(records) > MAX_RECORDS:
            raise LedgerError(f"{path}: more than {MAX_RECORDS} records; split the file")
    return records


def check_manifest(record: Record) -> str | None:
    """None when the record's stored manifest has a valid signature and its soft binding names
    the record's watermark ID; else the reason in words.

    Signer and training shown for a ledger match then come from this manifest, so a record can
    only claim what a signature covers, and only for the watermark ID it was signed for.
    """
    if not record.manifest:
        return "the record has no manifest to verify"
    from guard.provenance import c2pa_io

    # the one standalone validation, as verify uses for a ledger match; trust is left to the
    # verifier's anchors, so an untrusted but valid signature is accepted here
    report = c2pa_io.read_store(record.manifest, trust_pem=None)
    if report.state not in ("trusted", "valid"):
        words = [f.meaning for f in report.failures if f.code != "signingCredential.untrusted"]
        reason = "; ".join(dict.fromkeys(words)) or "no valid claim signature"
        return f"its stored manifest does not verify ({reason})"
    bound = (report.soft_binding or {}).get("id")
    if not isinstance(bound, str) or normalise_id(bound) != record.watermark_id:
        return "its stored manifest is not bound to this watermark ID"
    return None
