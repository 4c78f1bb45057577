"""Time guard adds per generated image, against the plain PNG save a generator would do anyway.

    /work/venv/bin/python benchmarks/bench_generate.py [--repeat 15] [--sizes 512,1024]
    /work/venv/bin/python benchmarks/bench_generate.py --unet-step   # + SD 1.5 step time

"plain" is what web UI does: PIL PNG save with the `parameters` text chunk. "guard" is
`guard.publish` exactly as `guard generate` calls it: watermark embed, text + XMP metadata,
C2PA signature with the generation assertion, ledger record, atomic save. The columns in
between split that cost. Images are natural photos (../shared/datasets/cset14 when present,
else scikit-image's samples) resized to each size, since PNG and watermark cost depend on content.

--unet-step times one denoising step of a randomly initialised UNet with Stable Diffusion 1.5's
exact architecture (same FLOPs as the real model; no weights are downloaded) at 512x512 with CFG,
to put the overhead next to a real-size generation on this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, PngImagePlugin

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cset14"
INFOTEXT = (
    "a blue bird, flying over a field of flowers\nNegative prompt: lowres\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1478966807, Size: {s}x{s}, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: guard v0.1.0"
)


def photo(size: int) -> Image.Image:
    files = sorted(SHARED.glob("*.png")) if SHARED.is_dir() else []
    if files:
        im = Image.open(max(files, key=lambda p: Image.open(p).size[0] * Image.open(p).size[1]))
    else:
        from skimage import data

        im = Image.fromarray(data.astronaut())
    return im.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def timed_together(fns: list, repeat: int) -> list[float]:
    """Median ms of each function, run in turn so machine-load drift hits them all alike."""
    for fn in fns:
        fn()  # warm-up: imports, first-use setup
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
    return [statistics.median(t) * 1000 for t in times]


def unet_step_seconds() -> float:
    """One CFG denoising step (batch 2) of SD 1.5's UNet architecture at 512x512 (64x64 latents)."""
    import torch
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=64,
        cross_attention_dim=768,
        attention_head_dim=8,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
    ).eval()
    latents = torch.randn(2, 4, 64, 64)
    text = torch.randn(2, 77, 768)
    with torch.inference_mode():
        unet(latents, 999, text)
        t = time.perf_counter()
        unet(latents, 999, text)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--unet-step", action="store_true", help="also time one SD 1.5 UNet step")
    args = ap.parse_args()

    os.environ["GUARD_HOME"] = tempfile.mkdtemp()
    import guard.watermark as wm
    from guard.identity import Identity
    from guard.ledger import Ledger
    from guard.provenance.spec import Assertion, ManifestSpec
    from guard.publish import publish

    identity = Identity.default()
    have_watermark = hasattr(wm, "embed")
    work = Path(tempfile.mkdtemp())
    counter = iter(range(10**6))
    rows = []
    with Ledger(work / "ledger.sqlite3") as ledger:
        for size in map(int, args.sizes.split(",")):
            image = photo(size)
            text = INFOTEXT.format(s=size)
            spec = ManifestSpec(
                action="created",
                source="ai",
                software_agent={"name": "v1-5-pruned-emaonly", "version": "6ce0161689"},
                text={"parameters": text},
                assertions=[Assertion("org.guard.generation", {"infotext": text, "seed": 1})],
            )

            def plain(image=image, text=text) -> None:
                meta = PngImagePlugin.PngInfo()
                meta.add_text("parameters", text)
                image.save(work / f"plain-{next(counter)}.png", pnginfo=meta)

            def signed(image=image, spec=spec, mark=True) -> None:
                out = work / f"guard-{next(counter)}.png"
                publish(image, out, spec, identity=identity, watermark=mark, ledger=ledger)

            fns = [plain, lambda: signed(mark=False)]
            if have_watermark:
                fns += [lambda im=image: wm.embed(im, wm.new_payload()), signed]
            plain_ms, sign_ms, *rest = timed_together(fns, args.repeat)
            embed_ms, full_ms = rest if rest else (float("nan"), float("nan"))
            rows.append((size, plain_ms, embed_ms, sign_ms, full_ms, full_ms - plain_ms))

    print(f"guard generation overhead per image (median of {args.repeat}, {os.cpu_count()} CPUs)")
    print()
    print(
        "| size | plain PNG save | watermark embed | publish w/o watermark | publish (all) "
        "| added by guard |"
    )
    print("|---|---|---|---|---|---|")
    for size, plain_ms, embed_ms, sign_ms, full_ms, added in rows:
        print(
            f"| {size}x{size} | {plain_ms:.0f} ms | {embed_ms:.0f} ms | {sign_ms:.0f} ms "
            f"| {full_ms:.0f} ms | {added:.0f} ms |"
        )
    if not have_watermark:
        print("\nguard.watermark is not available: watermark columns are empty", file=sys.stderr)
    if args.unet_step:
        step = unet_step_seconds()
        print()
        print(
            f"SD 1.5 UNet, one CFG step at 512x512 on this CPU: {step:.2f} s "
            f"-> about {20 * step:.0f} s for 20 steps"
        )
        if rows and rows[0][0] == 512:
            print(
                f"guard's share of a 20-step 512x512 generation: {rows[0][5] / (20 * step * 1000):.4%}"
            )


if __name__ == "__main__":
    main()
