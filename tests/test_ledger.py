"""The ledger: records survive crashes and move between machines."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from guard.cli import main
from guard.ledger import Ledger, LedgerError, Record


def rec(i: int) -> Record:
    return Record(
        watermark_id=f"{i:016x}",
        signer="Ada",
        sha256="ab" * 32,
        file_name=f"{i}.png",
        manifest=b"\x00manifest" * 3,
        summary={"training": "notAllowed"},
        thumbnail=b"\xff\xd8jpeg",
    )


def test_add_get_and_wal_mode(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        assert ledger.add(rec(1))
        assert not ledger.add(rec(1))  # an ID is recorded once
        got = ledger.get(f"{1:016x}")
        assert got is not None and got.manifest == rec(1).manifest
        assert got.summary == {"training": "notAllowed"} and got.signer == "Ada"
        assert ledger.get("ffffffffffffffff") is None
    mode = sqlite3.connect(tmp_path / "l.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_location_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARD_LEDGER", str(tmp_path / "elsewhere.db"))
    with Ledger() as ledger:
        ledger.add(rec(7))
    assert (tmp_path / "elsewhere.db").exists()


def test_a_killed_writer_leaves_a_readable_ledger(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    writer = (
        "import sys, time\n"
        "from guard.ledger import Ledger, Record\n"
        f"ledger = Ledger({str(db)!r})\n"
        "i = 0\n"
        "while True:\n"
        "    ledger.add(Record(watermark_id=f'{i:016x}', manifest=b'm' * 50_000, summary={'i': i}))\n"
        "    i += 1\n"
        "    if i == 20: print('ready', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up, mid-write
    proc.wait()
    with Ledger(db) as ledger:
        assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        records = list(ledger)
        assert len(records) >= 20
        # every committed record is complete and readable
        assert all(r.manifest == b"m" * 50_000 for r in records)
        assert sorted(r.summary["i"] for r in records) == list(range(len(records)))


def test_export_import_between_machines(tmp_path: Path) -> None:
    with Ledger(tmp_path / "a.db") as a:
        for i in range(3):
            a.add(rec(i))
        assert a.export(tmp_path / "records.jsonl") == 3
    with Ledger(tmp_path / "b.db") as b:
        b.add(rec(2))
        # these records' manifests are not real: kept only when asked, and flagged
        assert b.import_(tmp_path / "records.jsonl", keep_unverified=True) == (2, 1)
        assert len(b) == 3
        got = b.get(f"{0:016x}")
        assert got.thumbnail == b"\xff\xd8jpeg"
        assert got.origin == "imported" and got.verified is False
        assert b.get(f"{2:016x}").origin == "local"  # the existing record was kept as it was


def test_import_rejects_garbage_without_importing_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rec(1).to_json()) + "\nnot json\n")
    with Ledger(tmp_path / "l.db") as ledger:
        with pytest.raises(LedgerError, match=r"bad.jsonl:2"):
            ledger.import_(bad)
        assert len(ledger) == 0


def test_ledger_cli(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    with Ledger(db) as ledger:
        ledger.add(rec(5))
    runner = CliRunner()
    r = runner.invoke(main, ["ledger", "show", f"{5:016x}", "--ledger", str(db), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["signer"] == "Ada"
    assert runner.invoke(main, ["ledger", "show", "00", "--ledger", str(db)]).exit_code == 1
    out = tmp_path / "x.jsonl"
    r = runner.invoke(main, ["ledger", "export", str(out), "--ledger", str(db), "--json"])
    assert json.loads(r.stdout) == {"exported": 1, "file": str(out)}
    r = runner.invoke(main, ["ledger", "import", str(out), "--ledger", str(tmp_path / "n.db")])
    assert r.exit_code == 2 and "does not verify" in r.stderr  # rec()'s manifest is not real
    r = runner.invoke(
        main,
        [
            "ledger",
            "import",
            str(out),
            "--ledger",
            str(tmp_path / "n.db"),
            "--json",
            "--keep-unverified",
        ],
    )
    assert json.loads(r.stdout) == {"added": 1, "already_present": 0, "unverified": 1}


def test_not_a_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="not a usable guard ledger"):
        Ledger(path)


def test_a_ledger_is_migrated_once_not_on_every_open(tmp_path) -> None:
    """Migration (new columns, lower-case IDs) runs on the first open; afterwards the file says
    it is current and opening it touches no record."""
    import sqlite3

    from guard.ledger import LEDGER_VERSION, Ledger

    path = tmp_path / "l.sqlite3"
    with Ledger(path):
        pass
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == LEDGER_VERSION
    db.execute("INSERT INTO records (watermark_id, created_at) VALUES ('ABCDEF0123456789', 'x')")
    db.commit()
    db.close()
    with Ledger(path):  # current: not migrated again, the odd row is left as it is
        pass
    db = sqlite3.connect(path)
    assert db.execute("SELECT watermark_id FROM records").fetchall() == [("ABCDEF0123456789",)]
    db.execute("PRAGMA user_version = 1")  # an older guard's file: migrated on the next open
    db.commit()
    db.close()
    with Ledger(path):
        pass
    db = sqlite3.connect(path)
    assert db.execute("SELECT watermark_id FROM records").fetchall() == [("abcdef0123456789",)]
    db.close()
