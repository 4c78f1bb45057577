"""Remote verify and federation through resolvers on loopback (issue 18 §5).

Pictures: procedural 256x256 RGB pictures (distinct content per seed), each signed by one signer
into one ledger; the test copies are JPEG re-encodes (quality 90) of the signed files, with no
metadata at all, so only the watermark leads to the record.

1. verify (R copies, interleaved, after one warm-up each):
   a. local: `guard.verify` with the signer's own ledger;
   b. remote: a client with an empty ledger and `--resolver A`, where A is `guard serve
      --read-only --ledger <the signer's>` in its own process (client cache off: every verify
      asks byBinding and /manifests);
   c. one federation hop: `--resolver B`, where B is `guard serve --read-only --upstream-only
      --upstream A` (client cache off; B has each ID asked of it once, so its own cache is cold
      for it and it asks A);
   d. remote with the client's cache warm (A's Cache-Control lets it keep both answers).
   The modes are interleaved copy by copy, so the machine's load falls on all of them.
   Target: b <= 1.5 x a.
2. scan (N copies, `guard.scan(workers=W)`): the signer's ledger locally, no resolver; then an
   empty local ledger and `resolvers=(A,)` with the client cache cold (emptied), then warm; the
   three in turn, `--rounds` times (2).

    nice -n 19 python benchmarks/bench_resolvers.py                        # R=30, N=300, W=2
    nice -n 19 python benchmarks/bench_resolvers.py --verifies 30 --images 10000 --workers 16

The issue asks for N=10,000; the shared 2-core machine ran N=400 (`--images 400`: 3 to 5 minutes
with the signing, under other jobs' load; docs/benchmarks.md); the default, 300, stays under 5.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from serve_support import serve_process  # noqa: E402  (guard serve as a user runs it)


def picture(seed: int, side: int = 256) -> Image.Image:
    """Smooth shapes at seed-chosen frequencies and phases, plus fine noise: pictures that differ
    in content, not only in noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    channels = []
    for _ in range(3):
        fx, fy, px, py = rng.uniform(8, 40, 2).tolist() + rng.uniform(0, 6.3, 2).tolist()
        c = 128 + 90 * np.sin(x / fx + px) * np.cos(y / fy + py)
        cx, cy, r = [*rng.uniform(0, side, 2).tolist(), rng.uniform(20, 80)]
        c += 60 * (((x - cx) ** 2 + (y - cy) ** 2) < r * r)
        channels.append(c)
    rgb = np.stack(channels, -1) + rng.normal(0, 6, (side, side, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def sign_all(root: Path, count: int) -> tuple[Path, Path, list[Path]]:
    """`count` pictures signed into one ledger; their stripped JPEG copies."""
    import guard

    os.environ["GUARD_HOME"] = str(root / "signer")
    ledger = root / "signer-ledger.sqlite3"
    (root / "src").mkdir()
    (root / "signed").mkdir()
    (root / "stripped").mkdir()
    copies = []
    started = time.monotonic()
    with guard.Ledger(ledger) as book:
        for i in range(count):
            src = root / "src" / f"{i:05d}.png"
            picture(i).save(src)
            pub = guard.sign(src, root / "signed" / f"{i:05d}.png", ledger=book)
            buf = io.BytesIO()
            Image.open(pub.path).convert("RGB").save(buf, "JPEG", quality=90)
            copy = root / "stripped" / f"{i:05d}.jpg"
            copy.write_bytes(buf.getvalue())
            copies.append(copy)
    print(f"signed {count} pictures in {time.monotonic() - started:.0f} s", flush=True)
    return root / "signer" / "identity" / "ca.pem", ledger, copies


def ms(values: list[float]) -> str:
    s = sorted(values)
    p95 = s[min(len(s) - 1, max(0, round(0.95 * len(s)) - 1))]
    return f"median {1000 * statistics.median(s):6.1f} ms, p95 {1000 * p95:6.1f} ms"


def bench_verify(ca: Path, ledger: Path, copies: list[Path], a: str, b: str, root: Path) -> None:
    import guard
    from guard.resolvers import Resolvers
    from guard.verdict import verify

    client_home = root / "client"
    os.environ["GUARD_HOME"] = str(client_home)
    os.environ["GUARD_CACHE"] = str(root / "client-cache")
    trust = (ca,)
    off_a, off_b = Resolvers((a,), cache=False), Resolvers((b,), cache=False)
    warm = Resolvers((a,), cache_dir=str(root / "warm-cache"))
    modes = {
        "local ledger": lambda p, own, empty: verify(p, trust_files=trust, ledger=own),
        "remote (A), cache off": lambda p, own, empty: verify(
            p, trust_files=trust, ledger=empty, resolvers=off_a
        ),
        "one hop (B -> A), cache off": lambda p, own, empty: verify(
            p, trust_files=trust, ledger=empty, resolvers=off_b
        ),
        "remote (A), client cache warm": lambda p, own, empty: verify(
            p, trust_files=trust, ledger=empty, resolvers=warm
        ),
    }
    times: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, float] = dict.fromkeys(modes, 0.0)  # this process and the servers, seconds
    with guard.Ledger(ledger) as own, guard.Ledger(client_home / "ledger.sqlite3") as empty:
        for path in copies:  # warm-up (imports, connections), and the warm cache filled
            assert _applies(verify(path, trust_files=trust, ledger=empty, resolvers=warm))
        for name, run in modes.items():
            assert _applies(run(copies[0], own, empty)), name
        for path in copies[1:]:  # the modes interleaved, so the machine's load falls on all
            for name, run in modes.items():
                cpu_before = time.process_time() + servers_cpu()
                started = time.perf_counter()
                v = run(path, own, empty)
                times[name].append(time.perf_counter() - started)
                cpu[name] += time.process_time() + servers_cpu() - cpu_before
                assert _applies(v), (name, path, v.to_dict()["resolvers"])
    local = statistics.median(times["local ledger"])
    local_cpu = cpu["local ledger"]
    print(
        f"\nverify of a stripped copy, {len(copies) - 1} copies each (wall; CPU of all processes):"
    )
    for name, values in times.items():
        ratio = statistics.median(values) / local
        per = 1000 * cpu[name] / len(values)
        print(
            f"  {name:32s} {ms(values)}   {ratio:.2f} x local;"
            f"  CPU {per:5.1f} ms, {cpu[name] / local_cpu:.2f} x local"
        )


def servers_cpu() -> float:
    """CPU seconds used so far by this process's guard serve children (A, B, their workers)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            if "serve" in child.cmdline() or "guard.server.checks" in " ".join(child.cmdline()):
                t = child.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


def _applies(v) -> bool:
    return bool(v.ledger is not None and v.ledger.applies and v.training)


def bench_scan(
    ca: Path, ledger: Path, copies: list[Path], a: str, root: Path, workers: int, rounds: int
) -> None:
    import guard

    folder = root / "scan"
    folder.mkdir()
    for path in copies:
        os.link(path, folder / path.name)
    os.environ["GUARD_HOME"] = str(root / "scan-client")
    cache = root / "scan-cache"
    os.environ["GUARD_CACHE"] = str(cache)
    runs = [
        ("local ledger, no resolver", dict(ledger=ledger)),
        ("remote (A), cache cold", dict(resolvers=(a,))),
        ("remote (A), cache warm", dict(resolvers=(a,))),
    ] * rounds
    print(f"\nscan of {len(copies)} stripped copies, {workers} workers, {rounds} rounds:")
    for name, options in runs:
        if name.endswith("cold"):
            shutil.rmtree(cache, ignore_errors=True)
        started = time.perf_counter()
        with CpuMeter() as meter:
            rows = list(guard.scan([folder], workers=workers, trust_files=(ca,), **options))
        spent = time.perf_counter() - started
        used = meter.used
        matched = sum(1 for r in rows if r.ledger_match and r.content_match and r.training)
        kept = cache / "resolvers"
        entries = len(list(kept.iterdir())) if kept.is_dir() else 0
        print(
            f"  {name:28s} {len(rows) / spent:6.1f} images/s ({spent:5.1f} s), "
            f"CPU {1000 * used / len(rows):5.1f} ms/image, "
            f"{matched}/{len(rows)} with the record's claims, cache entries {entries}",
            flush=True,
        )


class CpuMeter:
    """CPU seconds of this process and every process below it (scan's workers, which
    multiprocessing's fork server starts, and the servers), sampled every 0.1 s while it runs:
    a process that ends is counted up to its last sample."""

    def __init__(self) -> None:
        import threading

        self.seen: dict[int, float] = {}
        self.start: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            self.seen[proc.pid] = t.user + t.system
            self.start.setdefault(proc.pid, 0.0 if self._thread.is_alive() else self.seen[proc.pid])

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def used(self) -> float:
        return sum(v - self.start.get(pid, 0.0) for pid, v in self.seen.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verifies", type=int, default=30)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="each scan mode this often")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="guard-bench-resolvers-"))
    try:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            os.environ.pop(name, None)
        ca, ledger, copies = sign_all(root, max(args.verifies, args.images) + 1)
        with contextlib.ExitStack() as servers:
            a_args = ("--read-only", "--ledger", str(ledger))
            a = servers.enter_context(serve_process(root / "a", *a_args))
            b_args = ("--read-only", "--upstream-only", "--upstream", a)
            b = servers.enter_context(serve_process(root / "b", *b_args))
            bench_verify(ca, ledger, copies[: args.verifies + 1], a, b, root)
            if args.images:
                scanned = copies[1 : args.images + 1]
                bench_scan(ca, ledger, scanned, a, root, args.workers, args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
