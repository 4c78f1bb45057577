"""`ScanRow`: one image's answer, and the report's stable column names.

A column is only ever added; renaming or removing one changes `SCHEMA_VERSION`. The types
are written as pyarrow type names so this module stays import-light (the report builds the
Arrow schema from them). docs/scan.md documents every column.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

SCHEMA_VERSION = 1

Decision = Literal["allowed", "opted_out", "ai_generated", "unverifiable"]
DECISIONS: tuple[Decision, ...] = ("allowed", "opted_out", "ai_generated", "unverifiable")


@dataclass
class ScanRow:
    # identity
    path: str  # the file, or SHARD#MEMBER for a WebDataset sample
    shard: str | None = None
    key: str | None = None  # WebDataset sample key
    sha256: str | None = None
    format: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    # the answer
    decision: Decision = "unverifiable"
    reasons: list[str] = field(default_factory=list)  # plain words, one per signal
    signals: list[str] = field(default_factory=list)  # stable codes (docs/scan.md), same order
    # Content Credentials (C2PA)
    c2pa_state: str | None = None  # trusted | valid | invalid | absent
    c2pa_signer: str | None = None
    c2pa_training: str | None = None  # cawg.training-mining, strictest entry
    c2pa_legacy_training: str | None = None  # c2pa.training-mining (deprecated label)
    # best available facts, as verify reports them at top level
    digital_source_type: str | None = None
    training: str | None = None
    # XMP (IPTC / PLUS)
    xmp_digital_source_type: str | None = None
    xmp_data_mining: str | None = None
    # the downloader's record (img2dataset's .json beside the sample)
    x_robots_tag: str | None = None
    # guard's watermark and its ledger record
    watermark_found: bool | None = None  # None: not checked (--no-watermark, too small, unreadable)
    watermark_id: str | None = None
    watermark_p_value: float | None = None
    ledger_match: bool | None = None
    content_match: bool | None = None
    # other evidence of generation
    third_party_marks: list[str] = field(default_factory=list)
    generator: str | None = None  # e.g. "ComfyUI", from generator metadata
    error: str | None = None  # why the file could not be read, when it could not

    def to_dict(self) -> dict[str, Any]:
        """The row as a dict, its lists copied (what `dataclasses.asdict` gives, without its
        deep copy of every value: a row holds only texts, numbers and lists of texts)."""
        return {
            k: list(v) if isinstance(v, list) else v for k in _FIELDS for v in (getattr(self, k),)
        }

    def utf8_safe(self) -> ScanRow:
        """Every text as UTF-8 can hold it. A hostile sample's .json can carry lone surrogates
        ("\\ud800" is valid JSON), which the Parquet report cannot store: one such value would
        stop the scan. They are kept visible, escaped."""
        for name, value in vars(self).items():
            if isinstance(value, str):
                setattr(self, name, _utf8(value))
            elif isinstance(value, list):
                setattr(self, name, [_utf8(v) if isinstance(v, str) else v for v in value])
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanRow:
        row = cls(**{k: data[k] for k in COLUMN_NAMES if k in data})
        for name in ("reasons", "signals", "third_party_marks"):
            value = getattr(row, name)
            setattr(row, name, list(value) if value is not None else [])
        return row


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


# column -> pyarrow type name ("list<string>" for lists); order is the report's column order
COLUMNS: dict[str, str] = {
    "path": "string",
    "shard": "string",
    "key": "string",
    "sha256": "string",
    "format": "string",
    "bytes": "int64",
    "width": "int32",
    "height": "int32",
    "decision": "string",
    "reasons": "list<string>",
    "signals": "list<string>",
    "c2pa_state": "string",
    "c2pa_signer": "string",
    "c2pa_training": "string",
    "c2pa_legacy_training": "string",
    "digital_source_type": "string",
    "training": "string",
    "xmp_digital_source_type": "string",
    "xmp_data_mining": "string",
    "x_robots_tag": "string",
    "watermark_found": "bool",
    "watermark_id": "string",
    "watermark_p_value": "float64",
    "ledger_match": "bool",
    "content_match": "bool",
    "third_party_marks": "list<string>",
    "generator": "string",
    "error": "string",
}
COLUMN_NAMES = tuple(COLUMNS)
_FIELDS = tuple(f.name for f in fields(ScanRow))  # in the class's order, as asdict gave them
assert set(COLUMN_NAMES) == set(ScanRow.__dataclass_fields__), "COLUMNS and ScanRow disagree"
