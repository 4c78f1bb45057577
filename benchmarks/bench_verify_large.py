"""Peak memory and time of `guard verify` (watermark on) for small files that decode to huge images.

    .venv/bin/python benchmarks/bench_verify_large.py [--src DIR]

Each case runs in a fresh process, so the peak resident memory (VmHWM, Linux) is that verify's
own, imports included. The pictures are flat colour plus a little texture: a few hundred KB on disk that
decode to 81 MP (9000x9000 px). `--src` points at another checkout of guard (e.g. an older commit
unpacked with `git archive`) to measure it on the same files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 9000
CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import guard
t = time.perf_counter()
try:
    v = guard.verify(sys.argv[2])
    result = v.state
except Exception as exc:
    result = f"{type(exc).__name__}: {str(exc)[:80]}"
status = open("/proc/self/status").read().split("VmHWM:")[1]  # this program's own peak
print(json.dumps({"seconds": time.perf_counter() - t, "result": result,
                  "peak_mb": int(status.split()[0]) / 1024}))
"""


def picture(side: int, mode: str) -> Image.Image:
    """Flat colour with a faint 64 px texture tiled over it: compresses well, decodes huge."""
    rng = np.random.default_rng(0)
    tile = (128 + rng.normal(0, 3, (64, 64, 3))).clip(0, 255).astype(np.uint8)
    rgb = np.tile(tile, (side // 64 + 1, side // 64 + 1, 1))[:side, :side]
    return Image.fromarray(rgb, "RGB").convert(mode)


def run(src: Path, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases = []
        for fmt, mode, ext in (("PNG", "RGB", ".png"), ("JPEG", "RGB", ".jpg")):
            path = work / f"flat{SIDE}{ext}"
            picture(SIDE, mode).save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
            cases.append((fmt, path))
        print("| file | size on disk | decodes to | result | peak memory | time |")
        print("|---|---|---|---|---|---|")
        for fmt, path in cases:
            r = run(args.src, path)
            print(
                f"| {fmt} | {path.stat().st_size / 1024:.0f} KB | {SIDE}x{SIDE} "
                f"({SIDE * SIDE / 1e6:.0f} MP) | {r['result']} | {r['peak_mb']:.0f} MB | "
                f"{r['seconds']:.2f} s |"
            )


if __name__ == "__main__":
    main()
