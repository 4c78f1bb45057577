"""`guard serve` under load, on loopback, against a real `guard serve` process.

1. verify: N requests (default 200) of 1024x1024 JPEGs to /api/verify from C concurrent clients
   (default 8): half are signed JPEGs (C2PA + watermark + ledger), half are stripped re-encodes
   of them (watermark -> ledger match, no C2PA). Throughput, p50/p95/max latency, errors, and the
   server's resident memory over the run (flat memory: no growth once warm).
2. byBinding: a ledger of R records (default 100,000, each with a real ~12 KB manifest store and
   thumbnail), then L lookups (default 2,000) of random existing IDs through GET
   /matches/byBinding, from 1 client and from C clients; and GET /manifests/{id}.

3. flood: C parallel clients (default 4) send R verify requests (default 8) of F files of
   S MiB each, streamed (default 16 x 31 MiB: an outside tester's flood, which took the server
   from 52 MB to 2,300 MB), then R requests of 6 x 31 MiB (within the in-flight budget, so each
   is admitted when the budget allows). Reported: the answers' status codes and the peak
   resident memory of the server process and of the server with its check workers, sampled
   every 50 ms. The files are one 6000x6000 noise JPEG (31 MiB), a real image verify decodes.

Targets (issue 12): verify p95 <= 1 s on a 2-core machine with 0 errors and flat memory;
byBinding p95 <= 20 ms at 100,000 records. Flood: 413 or 503 for what does not fit, and a
peak far below the bodies sent.

    python benchmarks/bench_serve.py                   # all parts (about 6 minutes on 2 cores)
    python benchmarks/bench_serve.py --only verify --requests 200 --clients 8
    python benchmarks/bench_serve.py --only binding --records 100000 --lookups 2000
    python benchmarks/bench_serve.py --only flood --clients 4 --requests 8

Images: ../shared/datasets (cset14, cbsd68) resized to 1024x1024.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
HOST = "127.0.0.1"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s)) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:  # gone meanwhile (a check worker that was replaced)
        return 0.0
    return float("nan")


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (the server's check workers), from /proc."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids = [int(k) for k in task.read_text().split()]
        except OSError:
            continue
        for kid in kids:
            out += [kid, *children(kid)]
    return out


class Server:
    """`guard serve --read-only` in its own process, as a user would run it."""

    def __init__(self, home: Path, ledger: Path | str) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        env = {**os.environ, "GUARD_HOME": str(home)}
        cmd = [sys.executable, "-m", "guard", "serve", "--read-only", "--port", str(self.port)]
        self.proc = subprocess.Popen([*cmd, "--ledger", str(ledger)], env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/api/info", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("guard serve did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def pictures(n: int) -> list[Image.Image]:
    files = sorted((SHARED / "cset14").glob("*.png")) + sorted((SHARED / "cbsd68").glob("*.png"))
    out = []
    for f in files:
        im = Image.open(f)
        if im.mode not in ("RGB", "RGBA"):
            continue  # colour pictures, as people share them
        out.append(im.convert("RGB").resize((1024, 1024), Image.BICUBIC))
        if len(out) == n:
            break
    return out


def prepare(folder: Path, ledger_path: Path, n: int) -> list[tuple[str, bytes]]:
    """n signed 1024^2 JPEGs and their stripped re-encodes, as (name, bytes)."""
    import guard

    bodies = []
    with guard.Ledger(ledger_path) as ledger:
        for i, im in enumerate(pictures(n)):
            src = folder / f"p{i}.png"
            im.save(src)
            pub = guard.sign(src, folder / f"p{i}.jpg", ledger=ledger)
            bodies.append((f"p{i}.jpg", pub.path.read_bytes()))
            buf = io.BytesIO()
            Image.open(pub.path).save(buf, "JPEG", quality=85)
            bodies.append((f"p{i}.stripped.jpg", buf.getvalue()))
    return bodies


def run_load(url: str, work: list, clients: int, send) -> tuple[list[float], list[str], float]:
    """`work` items sent by `clients` threads; returns latencies, errors and wall time."""
    lock = threading.Lock()
    todo = list(enumerate(work))
    latencies: list[float] = []
    errors: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            while True:
                with lock:
                    if not todo:
                        return
                    _, item = todo.pop(0)
                t0 = time.perf_counter()
                try:
                    r = send(c, item)
                    ok = r.status_code == 200
                    problem = None if ok else f"{r.status_code} {r.text[:120]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if problem:
                        errors.append(problem)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - t0


def bench_verify(tmp: Path, requests: int, clients: int) -> None:
    home, ledger = tmp / "home", tmp / "ledger.sqlite3"
    os.environ["GUARD_HOME"] = str(home)
    bodies = prepare(tmp, ledger, 8)
    server = Server(home, ledger)
    try:

        def send(c: httpx.Client, body: tuple[str, bytes]) -> httpx.Response:
            name, data = body
            r = c.post("/api/verify", files=[("files", (name, data, "image/jpeg"))])
            if r.status_code == 200 and "error" in r.json()["results"][0]:
                return httpx.Response(500, text=r.json()["results"][0]["error"])
            return r

        run_load(server.url, bodies[:8], clients, send)  # warm-up: libraries, caches
        work = [bodies[i % len(bodies)] for i in range(requests)]
        samples: list[tuple[float, float]] = []  # (server alone, server + its check workers)
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                own = rss_mb(server.proc.pid)
                samples.append((own, own + sum(rss_mb(k) for k in children(server.proc.pid))))
                stop.wait(0.25)

        sampler = threading.Thread(target=sample)
        sampler.start()
        latencies, errors, wall = run_load(server.url, work, clients, send)
        stop.set()
        sampler.join()
    finally:
        server.close()
    rss = [m for m, _ in samples]
    total = [t for _, t in samples]
    quarter = max(1, len(rss) // 4)
    print(
        f"\n### verify: {requests} requests of 1024x1024 JPEGs, {clients} concurrent clients "
        f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} after the run)\n"
    )
    print(
        "| throughput | p50 | p95 | max | errors | RSS first quarter | RSS last quarter | RSS peak "
        "| with check workers: first → last quarter (peak) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {requests / wall:.1f} req/s | {statistics.median(latencies) * 1000:.0f} ms | "
        f"{pct(latencies, 95) * 1000:.0f} ms | {max(latencies) * 1000:.0f} ms | {len(errors)} | "
        f"{statistics.median(rss[:quarter]):.0f} MB | {statistics.median(rss[-quarter:]):.0f} MB | "
        f"{max(rss):.0f} MB | {statistics.median(total[:quarter]):.0f} → "
        f"{statistics.median(total[-quarter:]):.0f} MB ({max(total):.0f}) |"
    )
    for e in errors[:5]:
        print("error:", e)


def fill_ledger(path: Path, records: int, tmp: Path) -> list:
    """`records` records, each with a real manifest store and thumbnail, in one transaction.

    Bulk loading uses add_many (one transaction): add() commits (and fsyncs) every record, which
    is right for signing and far too slow for 100,000 rows."""
    import guard
    from guard.ledger import Ledger

    im = pictures(1)[0]
    src = tmp / "one.png"
    im.save(src)
    with Ledger(path) as book:
        pub = guard.sign(src, tmp / "one.signed.jpg", ledger=book)
        real = book.get(pub.watermark_id)
        made = [real, *copies([real], records - 1, seed=0)]
        book.add_many(made[1:])
        assert len(book) >= records * 0.999
    return made


def copies(real: list, n: int, seed: int) -> Iterator:
    """n records of the real ones' sizes and contents, each under a fresh ID, label and hash."""
    from guard.ledger import Record

    rng = random.Random(seed)
    for i in range(n):
        r = real[i % len(real)]
        yield Record(
            watermark_id=f"{rng.getrandbits(64):016x}",
            signer=r.signer,
            sha256=f"{rng.getrandbits(256):064x}",
            file_name=r.file_name,
            manifest_label=f"urn:c2pa:{uuid.UUID(int=rng.getrandbits(128), version=4)}",
            manifest=r.manifest,
            summary=r.summary,
            thumbnail=r.thumbnail,
            fingerprint=r.fingerprint,
        )


def lookup_rows(home: Path, ledger: Path | str, picks: list, clients: int) -> list[tuple]:
    """byBinding from 1 and from `clients` clients, then /manifests, for the records `picks`
    through a read-only `guard serve` over `ledger` (a file or a postgresql:// URL); each answer
    checked against its record. Rows of (request, clients, latencies, errors, wall)."""
    from guard import watermark

    server = Server(home, ledger)
    rows = []
    try:

        def by_binding(c: httpx.Client, rec) -> httpx.Response:
            value = base64.b64encode(bytes.fromhex(rec.watermark_id)).decode()
            r = c.get("/matches/byBinding", params={"alg": watermark.ALGORITHM, "value": value})
            if r.status_code == 200 and r.json()["matches"][0]["manifestId"] != rec.manifest_label:
                return httpx.Response(500, text="wrong match")
            return r

        def manifest(c: httpx.Client, rec) -> httpx.Response:
            r = c.get(f"/manifests/{rec.manifest_label}")
            return r if r.content == rec.manifest else httpx.Response(500, text="wrong store")

        run_load(server.url, picks[:50], 1, by_binding)  # warm-up
        for label, send, n_clients in (
            ("GET /matches/byBinding", by_binding, 1),
            ("GET /matches/byBinding", by_binding, clients),
            ("GET /manifests/{id}", manifest, 1),
        ):
            lat, errors, wall = run_load(server.url, picks, n_clients, send)
            rows.append((label, n_clients, lat, errors, wall))
    finally:
        server.close()
    return rows


def bench_binding(tmp: Path, records: int, lookups: int, clients: int) -> None:
    home, ledger = tmp / "bhome", tmp / "big.sqlite3"
    os.environ["GUARD_HOME"] = str(home)
    t0 = time.perf_counter()
    made = fill_ledger(ledger, records, tmp)
    built = time.perf_counter() - t0
    size = ledger.stat().st_size / 2**20
    rng = random.Random(1)
    picks = [rng.choice(made) for _ in range(lookups)]
    rows = lookup_rows(home, ledger, picks, clients)
    print(
        f"\n### lookups: {records:,} ledger records ({size:.0f} MiB, built in {built:.0f} s), "
        f"{lookups:,} random existing IDs (load average {os.getloadavg()[0]:.1f})\n"
    )
    print("| request | clients | throughput | p50 | p95 | max | errors |")
    print("|---|---|---|---|---|---|---|")
    for label, n, lat, errors, wall in rows:
        print(
            f"| {label} | {n} | {len(lat) / wall:.0f} req/s | {statistics.median(lat) * 1000:.1f} ms | "
            f"{pct(lat, 95) * 1000:.1f} ms | {max(lat) * 1000:.1f} ms | {len(errors)} |"
        )


def flood_body(files: int, data: bytes) -> tuple[int, str, object]:
    """A multipart body of `files` copies of `data`, streamed: the client holds one copy."""
    boundary = "guardbenchflood"
    heads = [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="f{i}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode()
        for i in range(files)
    ]
    tail = f"--{boundary}--\r\n".encode()
    size = sum(len(h) + len(data) + 2 for h in heads) + len(tail)

    def stream():
        for head in heads:
            yield head
            for i in range(0, len(data), 2**20):
                yield data[i : i + 2**20]
            yield b"\r\n"
        yield tail

    return size, f"multipart/form-data; boundary={boundary}", stream


def flood_round(server: Server, files: int, data: bytes, requests: int, clients: int) -> tuple:
    """One flood: `requests` bodies of `files` x `data` from `clients` threads at once."""
    size, ctype, stream = flood_body(files, data)
    samples: list[tuple[float, float]] = []
    statuses: dict[str, int] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def sample() -> None:
        while not stop.is_set():
            own = rss_mb(server.proc.pid)
            samples.append((own, own + sum(rss_mb(k) for k in children(server.proc.pid))))
            stop.wait(0.05)

    def send(c: httpx.Client, _: int) -> httpx.Response:
        headers = {"content-type": ctype, "content-length": str(size)}
        try:
            key = str(c.post("/api/verify", content=stream(), headers=headers).status_code)
        except httpx.HTTPError as exc:  # the connection closed before an answer was read
            key = type(exc).__name__
        with lock:
            statuses[key] = statuses.get(key, 0) + 1
        return httpx.Response(200)

    idle = rss_mb(server.proc.pid)
    sampler = threading.Thread(target=sample)
    sampler.start()
    _, _, wall = run_load(server.url, list(range(requests)), clients, send)
    stop.set()
    sampler.join()
    return files, size, idle, samples, statuses, wall


def bench_flood(tmp: Path, requests: int, clients: int) -> None:
    """Upload memory under a flood: statuses, and the server's peak RSS (alone, and with its
    check workers)."""
    import numpy as np

    import guard

    home, ledger = tmp / "fhome", tmp / "flood.sqlite3"
    os.environ["GUARD_HOME"] = str(home)
    guard.Ledger(ledger).close()
    noise = np.random.default_rng(0).integers(0, 255, (6000, 6000, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    server = Server(home, ledger)
    try:
        rows = [flood_round(server, files, data, requests, clients) for files in (16, 6)]
    finally:
        server.close()
    print(
        f"\n### flood: {requests} verify requests from {clients} clients at once, files of "
        f"{len(data) / 2**20:.0f} MiB ({os.cpu_count()} CPUs)\n"
    )
    print(
        "| files per request | body | answers | server RSS idle | peak | peak with workers | wall |"
    )
    print("|---|---|---|---|---|---|---|")
    for files, size, idle, samples, statuses, wall in rows:
        answers = ", ".join(f"{n} x {k}" for k, n in sorted(statuses.items()))
        print(
            f"| {files} | {size / 2**20:.0f} MiB | {answers} | {idle:.0f} MB | "
            f"{max(s[0] for s in samples):.0f} MB | {max(s[1] for s in samples):.0f} MB | "
            f"{wall:.0f} s |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", choices=("verify", "binding", "flood"))
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--lookups", type=int, default=2_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        if args.only in (None, "verify"):
            bench_verify(Path(tmp), args.requests, args.clients)
        if args.only in (None, "binding"):
            bench_binding(Path(tmp), args.records, args.lookups, args.clients)
        if args.only in (None, "flood"):
            flood = args.requests if args.only == "flood" else 8
            bench_flood(Path(tmp), flood, 4 if args.only is None else args.clients)


if __name__ == "__main__":
    main()
