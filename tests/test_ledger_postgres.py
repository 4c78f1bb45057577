"""The ledger on a real PostgreSQL server (tests/pg_support.py): the SQLite ledger's protocol with
many writers at once, read-only replicas, records moved both ways byte for byte, the pipeline
hook and `guard serve` over one database. The behaviour both backends share is also run over
each in tests/test_ledger.py (the `ledger_at` fixture)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from serve_support import free_port, live_server, signed_picture

from guard.cli import main
from guard.ledger import Ledger, LedgerError, Record, postgres

ROOT = Path(__file__).resolve().parents[1]


def rec(i: int, **kw) -> Record:
    return Record(watermark_id=f"{i:016x}", signer="Ada", manifest=b"m" * 100, **kw)


def sql(url: str, query: str, args: tuple = ()) -> list[tuple]:
    """A statement outside guard, as another tool (or an administrator) would run it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else []


WRITER = """
import sys
from guard.ledger import Ledger, Record
url, n, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.stdin.readline()  # every writer opens the unmade ledger at the same moment
won = 0
with Ledger(url) as ledger:
    won += ledger.add(Record(watermark_id="00000000000000ff", signer=str(first)))
    for i in range(first, first + n):
        record = Record(watermark_id=f"{i:016x}", manifest=bytes([i % 256]) * 4000)
        if i % 2:
            ledger.add(record, pending=f"/tmp/guard-never-{i}.png")
            ledger.commit(record)
        else:
            ledger.add(record)
print(won)
"""


def test_four_writer_processes_share_one_ledger(pg_url: str) -> None:
    """Four processes open a ledger nobody has made yet, all at once (one migrates, the others
    wait on its lock), then write 50 records each, half through pending → commit; an ID all
    four add goes to exactly one of them."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, pg_url, "50", str(1000 + 100 * k)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    results = [p.communicate("go\n", timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    assert sum(int(out) for out, _ in results) == 1
    with Ledger(pg_url) as ledger:
        assert len(ledger) == 4 * 50 + 1
        assert ledger.get(f"{1101:016x}").manifest == bytes([1101 % 256]) * 4000
    assert sql(pg_url, "SELECT count(*) FROM records WHERE state <> 'committed'") == [(0,)]
    assert sql(pg_url, "SELECT version FROM guard_ledger") == [(4,)]


def test_pending_is_invisible_until_commit_and_settled_by_the_next_open(
    pg_url: str, tmp_path: Path
) -> None:
    """As on SQLite: a pending record is seen by nobody until its file is in place. A writer that
    died leaves it for the next open of the ledger on its host, which commits it if the file is
    there with the recorded hash and removes it if not; another host's and a live writer's
    pending records are left alone (this host cannot see their files)."""
    there = tmp_path / "there.png"
    there.write_bytes(b"picture")
    digest = hashlib.sha256(b"picture").hexdigest()
    with Ledger(pg_url) as writer, Ledger(pg_url) as other:
        writer.add(rec(1), pending=tmp_path / "one.png")
        assert writer.get(rec(1).watermark_id) is None and len(other) == 0 and list(other) == []
        writer.commit(rec(1))
        assert other.get(rec(1).watermark_id).signer == "Ada"
        writer.add(rec(2, sha256=digest), pending=there)  # died after the save
        writer.add(rec(3, sha256=digest), pending=tmp_path / "never.png")  # died before it
        writer.add(rec(4, sha256=digest), pending=tmp_path / "never.png")  # another host's
        writer.add(rec(5, sha256=digest), pending=tmp_path / "never.png")  # still writing
    sql(
        pg_url,
        "UPDATE records SET pending_pid = 999999999 WHERE watermark_id <> %s",
        (rec(5).watermark_id,),
    )
    sql(
        pg_url,
        "UPDATE records SET pending_host = 'elsewhere' WHERE watermark_id = %s",
        (rec(4).watermark_id,),
    )
    with Ledger(pg_url) as ledger:
        assert ledger.get(rec(2).watermark_id) is not None
        assert [r.watermark_id for r in ledger] == [rec(1).watermark_id, rec(2).watermark_id]
    pending = sql(pg_url, "SELECT watermark_id FROM records WHERE state = 'pending' ORDER BY 1")
    assert pending == [(rec(4).watermark_id,), (rec(5).watermark_id,)]


def test_read_only_refuses_writes_and_never_creates_or_migrates(pg_url: str) -> None:
    with pytest.raises(LedgerError, match="no guard ledger there") as missing:
        Ledger(pg_url, read_only=True)
    assert missing.value.reason == "no guard ledger there"
    assert sql(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()") == [
        (0,)
    ]
    with Ledger(pg_url) as writer:
        writer.add(rec(1))
        reader = Ledger(pg_url, read_only=True)
        writer.add(rec(2))  # after the reader opened: seen, no snapshot is kept
        assert len(reader) == 2 and reader.get(rec(2).watermark_id).manifest == b"m" * 100
    with pytest.raises(LedgerError, match="read-only"):
        reader.add(rec(3))
    with pytest.raises(LedgerError, match="read-only"), reader._sql.transaction() as run:
        run("DELETE FROM records", ())  # past guard's own check, the server itself refuses
    reader.close()
    # an older guard's ledger, opened by fresh processes: read as it is (the later columns as
    # NULL), never upgraded
    sql(pg_url, "ALTER TABLE records DROP COLUMN thumbnail_at")
    sql(pg_url, "UPDATE guard_ledger SET version = 3")
    postgres.close_pools()
    with Ledger(pg_url, read_only=True) as old:
        assert old.get(rec(1).watermark_id).signer == "Ada"
    assert sql(pg_url, "SELECT version FROM guard_ledger") == [(3,)]
    postgres.close_pools()
    with Ledger(pg_url) as writer:  # a writer migrates it
        assert writer.get(rec(1).watermark_id).signer == "Ada"
    assert sql(pg_url, "SELECT version FROM guard_ledger") == [(4,)]


def test_records_move_sqlite_to_postgresql_and_back_byte_identical(
    tmp_path: Path, pg_url: str
) -> None:
    """`guard ledger import` takes another ledger as its source: SQLite → PostgreSQL → SQLite
    keeps every record as it was (origin, verified, times, manifest, thumbnail, fingerprint),
    and each ledger's export is the same file. The thumbnail and fingerprint, which the signed
    manifest holds already, are stored once."""
    first = tmp_path / "first.sqlite3"
    signed = signed_picture(tmp_path, first)
    with Ledger(first) as ledger:
        ledger.add(rec(7, origin="imported", verified=False, summary={"n": [1, "two"]}))
        ledger.add(rec(8, thumbnail=b"\xff\xd8" * 100, fingerprint=b"GFP1" * 40))
    runner = CliRunner()
    back = tmp_path / "back.sqlite3"
    for source, target in ((first, pg_url), (pg_url, back)):
        r = runner.invoke(
            main, ["ledger", "import", str(source), "--ledger", str(target), "--json"]
        )
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout) == {"added": 3, "already_present": 0}
    r = runner.invoke(main, ["ledger", "import", str(first), "--ledger", pg_url, "--json"])
    assert json.loads(r.stdout) == {"added": 0, "already_present": 3}
    exports = []
    for i, location in enumerate((first, pg_url, back)):
        with Ledger(location) as ledger:
            records = sorted(ledger, key=lambda r: r.watermark_id)
            ledger.export(tmp_path / f"{i}.jsonl")
        exports.append((tmp_path / f"{i}.jsonl").read_bytes())
        if i == 0:
            want = records
        assert records == want
    assert exports[0] == exports[1] == exports[2] and len(exports[0].splitlines()) == 3
    real = next(r for r in want if r.watermark_id == signed.watermark_id)
    assert real.thumbnail and real.fingerprint and real.thumbnail in real.manifest
    kept = sql(
        pg_url,
        "SELECT thumbnail IS NULL, fingerprint IS NULL FROM records WHERE watermark_id = %s",
        (signed.watermark_id,),
    )
    assert kept == [(True, True)]  # each once: inside the manifest store


def test_the_pipeline_hook_records_into_postgresql(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GUARD_LEDGER=postgresql://… is all a platform's GPU worker needs: the hook's save records
    there, and verify finds the record through it."""
    import tiny_models as tm
    import torch

    from guard.pipeline import hooks
    from guard.pipeline.save import save
    from guard.verdict import verify

    monkeypatch.setenv("GUARD_LEDGER", pg_url)
    pipe = tm.tiny_sd_pipeline(tmp_path / "src")
    pipe.set_progress_bar_config(disable=True)
    hooks.attach(pipe)
    out = pipe(
        prompt="a red fox",
        num_inference_steps=2,
        height=256,
        width=256,
        generator=torch.Generator().manual_seed(2),
    )
    result = save(out.images[0], tmp_path / "fox.png")
    assert result.watermark_id
    with Ledger(pg_url) as ledger:
        assert ledger.get(result.watermark_id).file_name == "fox.png"
    assert not (Path(os.environ["GUARD_HOME"]) / "ledger.sqlite3").exists()
    assert verify(result.path, watermark=True).ledger is not None


def _by_binding(base: str, watermark_id: str) -> list[dict]:
    from guard import watermark

    value = base64.b64encode(bytes.fromhex(watermark_id)).decode()
    params = {"alg": watermark.ALGORITHM, "value": value}
    return httpx.get(f"{base}/matches/byBinding", params=params, timeout=30).json()["matches"]


def test_guard_serve_replicas_answer_by_binding_from_one_database(
    pg_url: str, tmp_path: Path
) -> None:
    """`guard serve --ledger postgresql://… --read-only` (a process of its own) and a writing
    server beside it answer byBinding and /manifests from the one database, including a record
    signed after both started."""
    from guard.server import ServeSettings, create_app

    first = signed_picture(tmp_path, pg_url, seed=1)
    port = free_port()
    replica = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "guard",
            "serve",
            "--ledger",
            pg_url,
            "--read-only",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with live_server(create_app(ServeSettings(ledger=pg_url))) as writer_url:
            later = signed_picture(tmp_path, pg_url, seed=2)
            replica_url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{replica_url}/services/supportedAlgorithms", timeout=2)
                    break
                except httpx.TransportError:
                    assert replica.poll() is None, replica.stderr.read()
                    assert time.monotonic() < deadline, "guard serve did not start"
                    time.sleep(0.1)
            for base in (writer_url, replica_url):
                for signed in (first, later):
                    assert _by_binding(base, signed.watermark_id) == [
                        {"manifestId": signed.manifest, "similarityScore": 100}
                    ]
                store = httpx.get(f"{base}/manifests/{later.manifest}", timeout=30)
                with Ledger(pg_url, read_only=True) as ledger:
                    assert store.content == ledger.get(later.watermark_id).manifest
    finally:
        replica.terminate()
        replica.wait(timeout=30)


def test_an_unreachable_database_is_one_line_without_its_password(pg_cluster) -> None:
    url = pg_cluster.url("nowhere").replace("guard@", "guard:s3cret@")
    r = CliRunner().invoke(main, ["ledger", "show", "0000000000000001", "--ledger", url])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.output
    assert "nowhere" in r.stderr and "s3cret" not in r.stderr and "guard:***@" in r.stderr


def test_a_sqlite_ledger_never_imports_psycopg(tmp_path: Path) -> None:
    code = (
        "import sys, guard\n"
        "from guard.ledger import Ledger, Record\n"
        f"with Ledger({str(tmp_path / 'l.sqlite3')!r}) as l: l.add(Record('00000000000000aa'))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('psycopg', 'guard.ledger.postgres'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_roles_that_may_only_write_records_or_only_read_them(pg_url: str) -> None:
    """Once the table exists, a signer's role needs no right to create anything, and a replica's
    role may only SELECT; what a role may not do is a LedgerError, not a traceback."""
    with Ledger(pg_url):
        pass
    schema = sql(pg_url, "SELECT current_schema()")[0][0]
    signer, reader = (
        f"signer_{schema}",
        f"reader_{schema}",
    )  # roles are the cluster's, not the schema's
    for statement in (
        f"CREATE ROLE {signer} LOGIN",
        f"CREATE ROLE {reader} LOGIN",
        f"GRANT USAGE ON SCHEMA {schema} TO {signer}, {reader}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON records TO {signer}",
        f"GRANT SELECT ON records, guard_ledger TO {signer}, {reader}",
    ):
        sql(pg_url, statement)
    with Ledger(pg_url.replace("guard@", f"{signer}@")) as ledger:
        ledger.add(rec(1), pending="/tmp/guard-never.png")
        ledger.commit(rec(1))
    with Ledger(pg_url.replace("guard@", f"{reader}@"), read_only=True) as ledger:
        assert ledger.get(rec(1).watermark_id).signer == "Ada"
    writing_reader = Ledger(pg_url.replace("guard@", f"{reader}@"))
    with writing_reader, pytest.raises(LedgerError, match="permission denied"):
        writing_reader.add(rec(2))
