"""The PostgreSQL ledger at scale (issue 18, part 5), on a real server.

1. records: K pictures (default 8) of 1024x1024 signed for real (manifest store, thumbnail,
   fingerprint); the ledger's records are copies of them under fresh IDs, labels and hashes,
   so every row is a real record's size and shape.
2. fill: the ledger is loaded to R records (default 100,000) through add_many.
3. ingest: W writer processes at once (default 8) each store I/W records (default I = 8,000)
   the way signing does: add(pending=…) then commit(), two durable transactions a record.
   The same on a SQLite ledger, for comparison.
4. lookups: `guard serve --read-only --ledger postgresql://…` in its own process; L lookups
   (default 2,000) of random existing IDs through GET /matches/byBinding from 1 and from 8
   clients, and GET /manifests/{id}. Target: p95 <= 20 ms.
5. bytes per record: what the records table takes on disk (heap, TOAST, indexes) over its
   count, on PostgreSQL and on a SQLite ledger of S records (default 10,000), and where a
   record's bytes go.

Unless --url names a server, a throwaway cluster of Debian's PostgreSQL runs in a temp folder on a
Unix socket with the server's default (durable) settings, and is removed at the end.

    nice -n 19 python benchmarks/bench_ledger.py                      # 100,000 records
    nice -n 19 python benchmarks/bench_ledger.py --records 1000000    # the issue's size
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bench_serve import copies, lookup_rows, pct, pictures  # noqa: E402

WRITER = """
import os, sys, time
from guard.ledger import Ledger, Record
target, templates, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with Ledger(templates, read_only=True) as t:
    real = list(t)
import random
rng = random.Random(seed)
with Ledger(target) as ledger:
    pass
print("ready", flush=True)
sys.stdin.readline()
t0 = time.perf_counter()
with Ledger(target) as ledger:
    for i in range(n):
        r = real[i % len(real)]
        rec = Record(watermark_id=f"{rng.getrandbits(64):016x}", signer=r.signer,
                     sha256=f"{rng.getrandbits(256):064x}", file_name=r.file_name,
                     manifest_label=f"urn:c2pa:{rng.getrandbits(128):032x}", manifest=r.manifest,
                     summary=r.summary, thumbnail=r.thumbnail, fingerprint=r.fingerprint)
        ledger.add(rec, pending=f"/tmp/bench-ledger-{os.getpid()}-{i}.jpg")
        ledger.commit(rec)
print(time.perf_counter() - t0)
"""


def templates(folder: Path, k: int) -> Path:
    """k real records (1024x1024 pictures signed), in a SQLite ledger of their own."""
    import guard

    path = folder / "templates.sqlite3"
    with guard.Ledger(path) as ledger:
        for i, im in enumerate(pictures(k)):
            src = folder / f"t{i}.png"
            im.save(src)
            guard.sign(src, folder / f"t{i}.jpg", ledger=ledger)
    return path


def fill(location: str | Path, real: list, n: int, seed: int) -> tuple[list, float]:
    """n records in batches of one transaction each; a sample of them for lookups."""
    from guard.ledger import Ledger

    sample, t0 = [], time.perf_counter()
    with Ledger(location) as ledger:
        batch = []
        for rec in copies(real, n, seed):
            batch.append(rec)
            if len(batch) == 2000:
                ledger.add_many(batch)
                sample.append(batch[0])
                batch = []
        ledger.add_many(batch)
        sample += batch[:1]
    return sample, time.perf_counter() - t0


def ingest(location: str | Path, template_path: Path, total: int, writers: int) -> float:
    """Records per second stored by `writers` processes at once, each through pending → commit."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(location),
                str(template_path),
                str(total // writers),
                str(1000 + w),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    for p in procs:  # every writer has imported guard and opened the ledger once
        assert p.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError("a writer failed")
    return (total // writers) * writers / (time.perf_counter() - t0)


def pg_bytes(url: str) -> dict[str, float]:
    import psycopg

    with psycopg.connect(url) as conn:
        n = conn.execute("SELECT count(*) FROM records").fetchone()[0]
        total, heap, toast, index = conn.execute(
            "SELECT pg_total_relation_size('records'), pg_relation_size('records'), "
            "pg_total_relation_size(reltoastrelid), pg_indexes_size('records') "
            "FROM pg_class WHERE relname = 'records'"
        ).fetchone()
        cols = conn.execute(
            "SELECT avg(octet_length(manifest)), avg(pg_column_size(manifest)), "
            "avg(coalesce(pg_column_size(thumbnail), 0)), "
            "avg(coalesce(pg_column_size(fingerprint), 0)), avg(pg_column_size(summary)) "
            "FROM (SELECT * FROM records LIMIT 2000) s"
        ).fetchone()
    return {
        "n": n,
        "per_record": total / n,
        "heap": heap / n,
        "toast": toast / n,
        "index": index / n,
        "manifest_raw": float(cols[0]),
        "manifest_stored": float(cols[1]),
        "thumbnail_stored": float(cols[2]),
        "fingerprint_stored": float(cols[3]),
        "summary_stored": float(cols[4]),
    }


def lookups(home: Path, url: str, sample: list, n: int, clients: int) -> list[tuple]:
    rng = random.Random(1)
    return lookup_rows(home, url, [rng.choice(sample) for _ in range(n)], clients)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--ingest", type=int, default=8_000, help="records the writers store")
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--lookups", type=int, default=2_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--pictures", type=int, default=8)
    ap.add_argument("--sqlite-records", type=int, default=10_000)
    ap.add_argument("--url", help="an existing PostgreSQL database (default: a throwaway cluster)")
    args = ap.parse_args()

    from pg_support import Cluster, binaries

    tmp = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    home = tmp / "home"
    os.environ["GUARD_HOME"] = str(home)
    cluster = None
    if args.url:
        url = args.url
    else:
        bin_dir = binaries()
        if bin_dir is None:
            sys.exit("no PostgreSQL here: apt-get install postgresql, or pass --url")
        cluster = Cluster(bin_dir, durable=True)
        cluster.start()
        url = cluster.new_ledger()
    try:
        from guard.ledger import Ledger

        t0 = time.perf_counter()
        template_path = templates(tmp, args.pictures)
        with Ledger(template_path) as t:
            real = list(t)
        made = time.perf_counter() - t0
        sample, filled = fill(url, real, args.records - args.ingest, seed=0)
        pg_rate = ingest(url, template_path, args.ingest, args.writers)
        sqlite = tmp / "bench.sqlite3"
        fill(sqlite, real, args.sqlite_records - args.ingest, seed=2)
        sqlite_rate = ingest(sqlite, template_path, args.ingest, args.writers)
        with Ledger(sqlite) as ledger:
            sqlite_n = len(ledger)
        sqlite_per = sqlite.stat().st_size / sqlite_n
        pg = pg_bytes(url)
        rows = lookups(home, url, sample, args.lookups, args.clients)
        raw = statistics.mean(
            len(r.manifest) + len(r.thumbnail or b"") + len(r.fingerprint or b"") for r in real
        )
        parts = {
            "manifest": statistics.mean(len(r.manifest) for r in real),
            "thumbnail": statistics.mean(len(r.thumbnail or b"") for r in real),
            "fingerprint": statistics.mean(len(r.fingerprint or b"") for r in real),
        }
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()[0]
    print(
        f"\n### PostgreSQL ledger: {pg['n']:,} records ({args.pictures} real 1024² records "
        f"copied; signed in {made:.0f} s), load average {load:.1f}, {os.cpu_count()} CPUs\n"
    )
    print(f"- fill: {args.records - args.ingest:,} records by add_many in {filled:.0f} s")
    print(
        f"- ingest, {args.writers} writer processes, pending → commit: **{pg_rate:,.0f} records/s** "
        f"on PostgreSQL ({args.ingest:,} records); {sqlite_rate:,.0f} records/s on SQLite"
    )
    print(
        f"- a record as signed: manifest {parts['manifest']:,.0f} B, thumbnail "
        f"{parts['thumbnail']:,.0f} B, fingerprint {parts['fingerprint']:,.0f} B "
        f"(the old layout stored {raw:,.0f} B of them; both extra copies are inside the manifest)"
    )
    print(
        f"- on disk, PostgreSQL: **{pg['per_record']:,.0f} B per record** (heap {pg['heap']:,.0f}, "
        f"TOAST {pg['toast']:,.0f}, indexes {pg['index']:,.0f}); manifest {pg['manifest_raw']:,.0f} B "
        f"stored as {pg['manifest_stored']:,.0f} (lz4), thumbnail {pg['thumbnail_stored']:,.0f}, "
        f"fingerprint {pg['fingerprint_stored']:,.0f}, summary {pg['summary_stored']:,.0f}"
    )
    print(f"- on disk, SQLite ({sqlite_n:,} records): **{sqlite_per:,.0f} B per record**\n")
    print("| request | clients | throughput | p50 | p95 | max | errors |")
    print("|---|---|---|---|---|---|---|")
    for label, k, lat, errors, wall in rows:
        print(
            f"| {label} | {k} | {len(lat) / wall:.0f} req/s | {statistics.median(lat) * 1000:.1f} ms"
            f" | {pct(lat, 95) * 1000:.1f} ms | {max(lat) * 1000:.1f} ms | {len(errors)} |"
        )


if __name__ == "__main__":
    main()
