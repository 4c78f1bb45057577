"""Draw samples/artwork.png procedurally (no third-party content) and sign a copy of it.

    python samples/make_sample.py

The signed copy is signed by a throwaway "guard sample" identity whose CA is saved beside it
(samples/sample-ca.pem), so `guard verify samples/artwork.signed.png --trust samples/sample-ca.pem`
shows a trusted result on any machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent


def draw(size: int = 512, seed: int = 7) -> Image.Image:
    """A small abstract painting: a dusk sky, rolling hills, a sun, brush-like texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    sky = np.stack([0.95 - 0.5 * y, 0.55 - 0.3 * y + 0.1 * x, 0.45 + 0.4 * y], -1)
    img = Image.fromarray((np.clip(sky, 0, 1) * 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    d.ellipse([size * 0.62, size * 0.12, size * 0.82, size * 0.32], fill=(255, 214, 120))
    for i, (tone, height) in enumerate(
        [((70, 110, 90), 0.58), ((40, 80, 70), 0.7), ((25, 50, 45), 0.82)]
    ):
        xs = np.linspace(0, size, 64)
        ys = size * (height + 0.05 * np.sin(xs / size * (4 + i) * np.pi + i))
        d.polygon([(0, size), *zip(xs.tolist(), ys.tolist()), (size, size)], fill=tone)
    a = np.asarray(img.filter(ImageFilter.GaussianBlur(1.2))).astype(np.float32)
    strokes = rng.normal(0, 7, (size, size // 4, 1)).repeat(4, axis=1)  # horizontal "brush" grain
    return Image.fromarray(np.clip(a + strokes, 0, 255).astype(np.uint8), "RGB")


def main() -> None:
    from guard.local_ca import init_local

    import guard

    artwork = HERE / "artwork.png"
    draw().save(artwork, optimize=True)
    with tempfile.TemporaryDirectory() as home:
        os.environ["GUARD_HOME"] = home
        init_local(name="guard sample artist", org="guard samples", quiet=True)
        out = HERE / "artwork.signed.png"
        guard.sign(artwork, out, author="guard sample artist", source="digital-art", force=True)
        shutil.copyfile(Path(home) / "identity" / "ca.pem", HERE / "sample-ca.pem")
    print(f"wrote {artwork}, {out} and {HERE / 'sample-ca.pem'}")


if __name__ == "__main__":
    main()
