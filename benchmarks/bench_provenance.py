"""Sign and verify time per image, guard vs a bare c2pa-python Builder.sign on the same bytes.

    .venv/bin/python benchmarks/bench_provenance.py [--repeat 7]

guard's sign here is the full publishing path without the watermark (which has its own
benchmark): XMP merge + placement, thumbnail, manifest, C2PA signature, ledger-free atomic save.
"bare" is Builder.sign with the same definition: once with the SDK's default settings (its own
1024 px thumbnail) and once with the thumbnail off (the least the SDK can do).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def picture(size: int) -> Image.Image:
    rng = np.random.default_rng(size)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([np.sin(9 * x) * 90 + 128, np.cos(7 * y) * 80 + 128, 255 * x * y], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def measure(size: int, fmt: str, work: Path, identity, repeat: int) -> tuple:
    """One row: guard sign, bare sign (SDK defaults / no thumbnail), guard verify, in ms."""
    import c2pa

    import guard
    from guard.provenance import manifest
    from guard.provenance.spec import ManifestSpec

    ext, mime = {"PNG": (".png", "image/png"), "JPEG": (".jpg", "image/jpeg")}[fmt]
    src = work / f"in{size}{ext}"
    picture(size).save(src, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    data = src.read_bytes()
    definition = manifest.build(ManifestSpec(), title=src.name, mime=mime, thumbnail=False)
    outputs = (work / f"out{size}_{i}{ext}" for i in range(10**6))
    offline = {"verify": {"remote_manifest_fetch": False}}

    def bare(settings: dict) -> None:
        with c2pa.Context.from_dict(settings) as ctx, c2pa.Builder(definition, context=ctx) as b:
            b.sign(identity.c2pa_signer(), mime, io.BytesIO(data), io.BytesIO())

    sign_ms = timed(lambda: guard.sign(src, next(outputs), watermark=False), repeat)
    bare_default = timed(lambda: bare(offline), repeat)
    bare_min = timed(
        lambda: bare({**offline, "builder": {"thumbnail": {"enabled": False}}}), repeat
    )
    signed = work / f"out{size}_0{ext}"
    verify_ms = timed(lambda: guard.verify(signed, watermark=False), repeat)
    return size, fmt, sign_ms, bare_default, bare_min, verify_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--sizes", default="512,1024,2048")
    args = ap.parse_args()

    os.environ["GUARD_HOME"] = tempfile.mkdtemp()
    from guard.identity import Identity

    identity = Identity.default()
    work = Path(tempfile.mkdtemp())
    rows = [
        measure(size, fmt, work, identity, args.repeat)
        for size in map(int, args.sizes.split(","))
        for fmt in ("PNG", "JPEG")
    ]

    help_times = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run(
            [Path(sys.executable).parent / "guard", "verify", "--help"],
            capture_output=True,
            check=True,
        )
        help_times.append(time.perf_counter() - t)

    print(
        f"{'size':>6} {'fmt':>5} {'guard sign':>11} {'bare sign':>10} {'bare, no thumb':>15} {'ratio':>6} {'guard verify':>13}"
    )
    for size, fmt, s, bd, bm, v in rows:
        print(
            f"{size:>5}² {fmt:>5} {s:>9.1f}ms {bd:>8.1f}ms {bm:>13.1f}ms {s / bd:>5.2f}x {v:>11.1f}ms"
        )
    print(
        "ratio = guard sign / bare sign with SDK defaults; verify = C2PA + XMP, no watermark check"
    )
    print(
        f"`guard verify --help`: {statistics.median(help_times) * 1000:.0f} ms (median of 5 runs)"
    )


if __name__ == "__main__":
    main()
