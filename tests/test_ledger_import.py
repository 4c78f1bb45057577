"""`guard ledger import` reads files from elsewhere: every line is checked, all or nothing, and a
record only carries claims its signed manifest makes for its own watermark ID."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from guard.cli import main
from guard.ledger import Ledger, LedgerError, Record
from guard.publishing import sign
from tests.helpers import art, write


def signed_record(tmp_path: Path, name: str = "a") -> Record:
    """A real record: a picture signed and watermarked by the local identity."""
    db = tmp_path / f"{name}-signer.db"
    pic = write(art(seed=len(name)), tmp_path / f"{name}.png")
    with Ledger(db) as ledger:
        published = sign(pic, ledger=ledger)
        record = ledger.get(published.watermark_id)
    assert record is not None
    return record


def write_lines(path: Path, *objs: object) -> Path:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return path


def good(i: int = 1) -> dict:
    return Record(
        watermark_id=f"{i:016x}", signer="Ada", summary={"training": "notAllowed"}
    ).to_json()


def test_upper_case_ids_are_found(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.add(Record(watermark_id="ABCDEF0123456789", signer="x"))
        assert ledger.get("abcdef0123456789") is not None
        assert ledger.get("ABCDEF0123456789") is not None


def test_an_old_ledger_is_migrated(tmp_path: Path) -> None:
    """A ledger written by guard 0.1 (fewer columns, an upper-case ID) opens and is found."""
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE records (watermark_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, "
        "signer TEXT, sha256 TEXT, file_name TEXT, manifest_label TEXT, manifest BLOB, "
        "summary TEXT NOT NULL DEFAULT '{}', thumbnail BLOB);"
    )
    con.execute(
        "INSERT INTO records VALUES ('ABCDEF0123456789', '2025-01-01T00:00:00+00:00', 'Ada', "
        "NULL, 'a.png', NULL, NULL, '{}', NULL)"
    )
    con.commit()
    con.close()
    with Ledger(db) as ledger:
        got = ledger.get("abcdef0123456789")
        assert got is not None and got.signer == "Ada" and got.origin == "local"
        ledger.add(Record(watermark_id="00000000000000ff", fingerprint=b"\x01\x02"))
        assert ledger.get("00000000000000ff").fingerprint == b"\x01\x02"
    columns = {r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(records)")}
    assert {"fingerprint", "origin", "verified", "state"} <= columns


BAD_LINES = {
    "not an object": "[1, 2, 3]",
    "not json": "{watermark_id: 1}",
    "short id": {**good(), "watermark_id": "abc"},
    "non-hex id": {**good(), "watermark_id": "zzzzzzzzzzzzzzzz"},
    "id not text": {**good(), "watermark_id": 12345},
    "signer not text": {**good(), "signer": {"name": "Adobe Inc."}},
    "huge signer": {**good(), "signer": "A" * 5000},
    "control chars": {**good(), "file_name": "a\x1b[2Jb.png"},
    "bad sha256": {**good(), "sha256": "12"},
    "bad base64": {**good(), "manifest": "not base64!!"},
    "huge thumbnail": {**good(), "thumbnail": base64.b64encode(b"\xff" * (2**20 + 10)).decode()},
    "summary not object": {**good(), "summary": "allowed"},
    "deep summary": {**good(), "summary": {"a": {"b": {"c": {"d": 1}}}}},
    "deep json": "[" * 100_000 + "]" * 100_000,
    "unknown field": {**good(), "trusted": True},
    "bad time": {**good(), "created_at": "yesterday"},
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_import_validates_every_line_and_imports_nothing(tmp_path: Path, case: str) -> None:
    path = write_lines(tmp_path / "in.jsonl", good(1), BAD_LINES[case], good(3))
    with Ledger(tmp_path / "l.db") as ledger:
        with pytest.raises(LedgerError, match=r"in\.jsonl:2") as err:
            ledger.import_(path, keep_unverified=True)
        assert "nothing was imported" in str(err.value)
        assert len(ledger) == 0


def test_duplicate_ids_in_one_file_are_refused(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", good(1), {**good(1), "watermark_id": "0" * 15 + "1"})
    with Ledger(tmp_path / "l.db") as ledger, pytest.raises(LedgerError, match="line 1"):
        ledger.import_(path, keep_unverified=True)


def test_imported_ids_are_normalised(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", {**good(), "watermark_id": "ABCDEF0123456789"})
    with Ledger(tmp_path / "l.db") as ledger:
        assert ledger.import_(path, keep_unverified=True) == (1, 0)
        assert ledger.get("abcdef0123456789") is not None


def test_a_real_record_moves_between_machines_verified(tmp_path: Path) -> None:
    record = signed_record(tmp_path)
    path = write_lines(tmp_path / "in.jsonl", {**record.to_json(), "fingerprint": "AQID"})
    with Ledger(tmp_path / "b.db") as b:
        assert b.import_(path) == (1, 0)
        got = b.get(record.watermark_id)
        assert got.origin == "imported" and got.verified is True
        assert got.manifest == record.manifest and got.fingerprint == b"\x01\x02\x03"


def test_a_forged_record_is_refused_or_flagged(tmp_path: Path) -> None:
    forged = Record(
        watermark_id="1234567890abcdef",
        signer="Adobe Inc.",
        manifest=b"\x00\x00\x00\x10jumbfake" * 20,
        summary={"training": "allowed", "digital_source_type": "digitalCapture"},
    ).to_json()
    path = write_lines(tmp_path / "in.jsonl", forged)
    with Ledger(tmp_path / "l.db") as ledger:
        with pytest.raises(LedgerError, match="does not verify"):
            ledger.import_(path)
        assert len(ledger) == 0
        assert ledger.import_(path, keep_unverified=True) == (1, 0)
        got = ledger.get("1234567890abcdef")
        assert got.verified is False and got.origin == "imported"


def test_a_real_manifest_under_another_id_is_refused(tmp_path: Path) -> None:
    """Copying a genuine manifest onto a different watermark ID must not lend it that ID."""
    record = signed_record(tmp_path)
    other = "ffffffffffffffff" if record.watermark_id != "ffffffffffffffff" else "0" * 16
    line = {**record.to_json(), "watermark_id": other, "summary": {"training": "allowed"}}
    path = write_lines(tmp_path / "in.jsonl", line)
    with Ledger(tmp_path / "l.db") as ledger, pytest.raises(LedgerError, match="not bound"):
        ledger.import_(path)


def with_statement_changed(manifest: bytes) -> bytes:
    """The stored manifest with one signed statement edited (training notAllowed -> NOTALLOWED)."""
    at = manifest.find(b"notAllowed")
    assert at > 0
    return manifest[:at] + b"NOTALLOWED" + manifest[at + 10 :]


def test_a_tampered_manifest_is_refused_for_the_reason_verify_gives(tmp_path: Path) -> None:
    """Import asks the same standalone validation as verify's ledger match (c2pa_io.read_store)
    and says why in its plain words; trust is the verifier's business, never a reason here."""
    from guard.provenance import c2pa_io

    record = signed_record(tmp_path)
    edited = with_statement_changed(record.manifest)
    line = {**record.to_json(), "manifest": base64.b64encode(edited).decode()}
    path = write_lines(tmp_path / "in.jsonl", line)
    with Ledger(tmp_path / "l.db") as ledger, pytest.raises(LedgerError) as refused:
        ledger.import_(path)
    report = c2pa_io.read_store(edited, trust_pem=None)
    assert report.state == "invalid"
    [altered] = [f for f in report.failures if f.code == "assertion.hashedURI.mismatch"]
    assert f"does not verify ({altered.meaning})" in str(refused.value)
    assert "trusted CA" not in str(refused.value)


def test_import_keeps_as_verified_exactly_what_verify_believes(tmp_path: Path) -> None:
    """A record imported as verified is one whose manifest verify's ledger match validates."""
    from guard.provenance import c2pa_io

    record = signed_record(tmp_path)
    stores = {
        "genuine": record.manifest,
        "edited": with_statement_changed(record.manifest),
        "truncated": record.manifest[: len(record.manifest) // 2],
    }
    for i, (name, store) in enumerate(stores.items()):
        line = {**record.to_json(), "manifest": base64.b64encode(store).decode()}
        with Ledger(tmp_path / f"{name}.db") as ledger:
            ledger.import_(write_lines(tmp_path / f"{name}.jsonl", line), keep_unverified=True)
            imported = ledger.get(record.watermark_id)
        believed = c2pa_io.read_store(store, trust_pem=None).state in ("trusted", "valid")
        assert imported.verified is believed, name
        assert believed is (i == 0), name


def test_ledger_show_marks_unverified_records(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    path = write_lines(tmp_path / "in.jsonl", {**good(7), "signer": "Adobe Inc."})
    with Ledger(db) as ledger:
        ledger.import_(path, keep_unverified=True)
    r = CliRunner().invoke(main, ["ledger", "show", f"{7:016x}", "--ledger", str(db)])
    assert r.exit_code == 0 and "unverified" in r.stdout
