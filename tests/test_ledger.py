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


def test_location_from_env(ledger_at, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARD_LEDGER", str(ledger_at("elsewhere")))
    with Ledger() as ledger:
        ledger.add(rec(7))
    monkeypatch.delenv("GUARD_LEDGER")
    with Ledger(ledger_at("elsewhere")) as ledger:
        assert ledger.get(rec(7).watermark_id) == ledger.get(rec(7).watermark_id.upper())
        assert ledger.get(rec(7).watermark_id).summary == {"training": "notAllowed"}


def test_a_killed_writer_leaves_a_readable_ledger(ledger_at) -> None:
    db = ledger_at("l")
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
        if isinstance(db, Path):
            assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        records = list(ledger)
        assert len(records) >= 20
        # every committed record is complete and readable
        assert all(r.manifest == b"m" * 50_000 for r in records)
        assert sorted(r.summary["i"] for r in records) == list(range(len(records)))


def test_export_import_between_machines(tmp_path: Path, ledger_at) -> None:
    with Ledger(ledger_at("a")) as a:
        for i in range(3):
            a.add(rec(i))
        assert a.export(tmp_path / "records.jsonl") == 3
    with Ledger(ledger_at("b")) as b:
        b.add(rec(2))
        # these records' manifests are not real: kept only when asked, and flagged
        assert b.import_(tmp_path / "records.jsonl", keep_unverified=True) == (2, 1)
        assert len(b) == 3
        got = b.get(f"{0:016x}")
        assert got.thumbnail == b"\xff\xd8jpeg"
        assert got.origin == "imported" and got.verified is False
        assert b.get(f"{2:016x}").origin == "local"  # the existing record was kept as it was


def test_import_rejects_garbage_without_importing_anything(tmp_path: Path, ledger_at) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rec(1).to_json()) + "\nnot json\n")
    with Ledger(ledger_at("l")) as ledger:
        with pytest.raises(LedgerError, match=r"bad.jsonl:2"):
            ledger.import_(bad)
        assert len(ledger) == 0


def test_ledger_cli(tmp_path: Path, ledger_at) -> None:
    db = ledger_at("l")
    with Ledger(db) as ledger:
        ledger.add(rec(5))
    runner = CliRunner()
    r = runner.invoke(main, ["ledger", "show", f"{5:016x}", "--ledger", str(db), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["signer"] == "Ada"
    assert runner.invoke(main, ["ledger", "show", "00", "--ledger", str(db)]).exit_code == 1
    out = tmp_path / "x.jsonl"
    r = runner.invoke(main, ["ledger", "export", str(out), "--ledger", str(db), "--json"])
    assert json.loads(r.stdout) == {"exported": 1, "file": str(out)}
    r = runner.invoke(main, ["ledger", "import", str(out), "--ledger", str(ledger_at("n"))])
    assert r.exit_code == 2 and "does not verify" in r.stderr  # rec()'s manifest is not real
    r = runner.invoke(
        main,
        [
            "ledger",
            "import",
            str(out),
            "--ledger",
            str(ledger_at("n")),
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


def _state(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_a_read_only_ledger_writes_nothing_migrates_nothing_settles_nothing(tmp_path) -> None:
    """Ledger(path, read_only=True) on a 0o444 file in a 0o555 folder: reads work and no file in
    the folder changes, not even as root (whom the mode bits do not stop): no -wal, no -shm, no
    migration, and another writer's pending row stays pending."""
    folder = tmp_path / "shared"
    folder.mkdir()
    path = folder / "l.sqlite3"
    with Ledger(path) as ledger:
        ledger.add(rec(1))
        ledger.add(rec(2), pending=folder / "never-written.png")
    db = sqlite3.connect(path)
    db.execute("UPDATE records SET pending_pid = 999999999 WHERE state = 'pending'")  # writer gone
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    assert sorted(p.name for p in folder.iterdir()) == ["l.sqlite3"]
    path.chmod(0o444)
    folder.chmod(0o555)
    before = _state(folder)
    try:
        with Ledger(path, read_only=True) as ledger:
            got = ledger.get(f"{1:016x}")
            assert got is not None and got.manifest == rec(1).manifest
            assert ledger.get(f"{2:016x}") is None and len(ledger) == 1
            assert [r.watermark_id for r in ledger] == [f"{1:016x}"]
            with pytest.raises(LedgerError, match="read-only"):
                ledger.add(rec(3))
        assert _state(folder) == before
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert db.execute("SELECT state FROM records WHERE pending_pid IS NOT NULL").fetchall() == [
        ("pending",)
    ]
    db.close()


def test_a_read_only_ledger_refuses_what_is_not_there_and_creates_nothing(tmp_path) -> None:
    with pytest.raises(LedgerError, match="no ledger there") as missing:
        Ledger(tmp_path / "typo.sqlite3", read_only=True)
    assert missing.value.reason and str(tmp_path) not in missing.value.reason
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="not a usable guard ledger"):
        Ledger(junk, read_only=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.sqlite3"]


def test_a_read_only_ledger_sees_what_other_processes_write(tmp_path) -> None:
    """A read-only reader opened before the writers: it sees a record committed by a writer that
    is still open (through the writer's -wal), and one committed by a writer that came and went
    in another process (checkpointed into the file)."""
    path = tmp_path / "l.sqlite3"
    with Ledger(path) as ledger:
        ledger.add(rec(1))
    reader = Ledger(path, read_only=True)
    assert reader.get(f"{2:016x}") is None
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from guard.ledger import Ledger, Record\n"
            f"with Ledger({str(path)!r}) as l: l.add(Record(watermark_id='{2:016x}'))\n",
        ],
        check=True,
    )
    assert reader.get(f"{2:016x}") is not None
    writer = Ledger(path)
    writer.add(rec(3))
    assert reader.get(f"{3:016x}") is not None  # the writer is still open: read through its -wal
    writer.add(rec(4))
    writer.close()
    assert reader.get(f"{4:016x}") is not None and len(reader) == 4
    reader.close()
