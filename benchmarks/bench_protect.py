"""Protection benchmark: guard's presets against Mist's default textural attack, on taef2.

    python benchmarks/bench_protect.py [--limit N] [--size 512] [--threads 2] [--methods ...]
    python benchmarks/bench_protect.py --purify [--paintings DIR] [--plots docs/img] [--limit N]

Images: cbsd68 and cset14 colour photos from ../shared/datasets, shorter side resized to --size and
centre-cropped to a square. Surrogate: the taef2 encoder/decoder in ../shared/models/taef2, which
both the attack and the evaluation use (white box, as Mist assumes for the SD VAE).
Baseline (same run): Mist's textural attack = plain L-inf sign-PGD pulling E(x) towards the target
pattern's latent, eps 16/255, 100 steps, step 1.6/255, run by the same loop as guard (channels-last,
no parameter gradients), so the time ratio comes from the method, not from engineering.
Figures: visibility (PSNR/SSIM protected vs original); disruption = PSNR of D(E(.)) vs the original,
for the original and the protected image, drop in dB, also after JPEG q75/q50 and resize x0.5 and
back; seconds per image; peak resident memory added during the attack.
--purify: the drop left after each purifier of benchmarks/protect_purify.py, as a share of the
drop before, for guard's default preset and the Mist baseline in the same run; --paintings names a
folder of public paintings (read in place, never committed) interleaved with the photos; Mist's
outputs are cached in tmp/protect-cache (git-ignored) since it takes minutes per 512^2 image.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.metrics import structural_similarity

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from guard.protection import PRESETS, protect  # noqa: E402
from guard.protection.attacks import Surrogate, TexturalAttack  # noqa: E402
from guard.protection.targets import target_pattern  # noqa: E402


def load_models():
    d = SHARED / "models" / "taef2"
    enc = torch.export.load(str(d / "taef2_encoder.pt2")).module()
    dec = torch.export.load(str(d / "taef2_decoder.pt2")).module()
    return enc, dec


def square(path: Path, size: int) -> Image.Image:
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = size / min(w, h)
    im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))


def dataset(limit: int, size: int) -> list[tuple[str, Image.Image]]:
    photos = sorted((SHARED / "datasets" / "cbsd68").glob("*.png"))
    picks = photos[:: max(1, len(photos) // max(1, limit - limit // 3))]
    extra = [SHARED / "datasets" / "cset14" / f"{n}.png" for n in ("pepper", "baboon", "monarch")]
    files = (picks[: limit - limit // 3] + extra[: limit // 3])[:limit]
    return [(p.stem, square(p, size)) for p in files]


def with_paintings(
    limit: int, size: int, paintings: Path | None, photos_too: bool = True
) -> list[tuple[str, Image.Image]]:
    """Paintings (every image in the folder, sorted) interleaved with the photos of dataset()."""
    photos = dataset(limit, size) if photos_too or paintings is None else []
    if paintings is None:
        return photos
    arts = [
        (p.stem, square(p, size))
        for p in sorted(paintings.iterdir())
        if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")
    ]
    mixed = [im for pair in zip(arts, photos) for im in pair]
    mixed += arts[len(photos) :] + photos[len(arts) :]
    return mixed[:limit]


def t(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def pil(x: torch.Tensor) -> Image.Image:
    a = (x[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(a)


def jpeg(im: Image.Image, q: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=q)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def half(im: Image.Image) -> Image.Image:
    w, h = im.size
    return im.resize((w // 2, h // 2), Image.BICUBIC).resize((w, h), Image.BICUBIC)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(F.mse_loss(a.clamp(0, 1), b.clamp(0, 1))))


CHANNELS = {
    "none": lambda im: im,
    "jpeg75": lambda im: jpeg(im, 75),
    "jpeg50": lambda im: jpeg(im, 50),
    "half": half,
}


@torch.no_grad()
def recon_psnr(enc, dec, im: Image.Image, ref: torch.Tensor) -> float:
    return psnr(dec(enc(t(im))).clamp(0, 1), ref)


def metrics(enc, dec, orig: Image.Image, prot: Image.Image) -> dict[str, float]:
    x = t(orig)
    out = {
        "psnr": psnr(t(prot), x),
        "ssim": structural_similarity(
            np.asarray(orig), np.asarray(prot), channel_axis=2, data_range=255
        ),
        "rec": recon_psnr(enc, dec, orig, x),
    }
    for name, ch in CHANNELS.items():
        out[f"drop_{name}"] = recon_psnr(enc, dec, ch(orig), x) - recon_psnr(enc, dec, ch(prot), x)
    return out


class PeakRSS:
    """Peak resident memory of this process while the block runs, above what it held before."""

    def __enter__(self):
        self.base = self.now()
        self.peak = self.base
        self.stop = False
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def watch(self) -> None:
        while not self.stop:
            self.peak = max(self.peak, self.now())
            time.sleep(0.02)

    @property
    def added_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def mist(enc, dec, im: Image.Image, eps: float) -> Image.Image:
    """Mist's default textural attack: plain sign-PGD, constant step eps/10, 100 steps, latent pull."""
    x = t(im)
    tgt = t(target_pattern(*im.size))
    att = TexturalAttack(
        Surrogate(enc, dec),
        target=tgt,
        use_decoder=False,
        eps=eps,
        steps=100,
        step_size=eps / 10,
        optimiser="sign",
        robust=False,
    )
    return pil(att(x, None))


METHODS = {
    "mist-eps16": lambda e, d, im: mist(e, d, im, 16 / 255),
    "mist-eps8": lambda e, d, im: mist(e, d, im, 8 / 255),
    **{
        f"guard-{name}": (
            lambda e, d, im, eps=eps, steps=steps: (
                protect(im, encoder=e, decoder=d, eps=eps, steps=steps, progress=False).image
            )
        )
        for name, (eps, steps) in PRESETS.items()
    },
    "guard-medium-latent-only": lambda e, d, im: (
        protect(im, encoder=e, eps=8 / 255, steps=8, progress=False).image
    ),
}


def method_fn(method: str):
    """A METHODS entry, or a variant of protect() spelt `guard:steps=4:scale=2:eot=purify`
    (eps in 1/255 units; bf16=1; the other keys are protect()'s), for the design measurements."""
    if not method.startswith("guard:"):
        return METHODS[method]
    kw: dict = dict(eps=8 / 255, steps=8)
    for item in method.split(":")[1:]:
        k, v = item.split("=")
        kw[k] = {
            "eps": lambda s: float(s) / 255,
            "eot": str,
            "bf16": lambda s: s == "1",
            "robust": lambda s: s == "1",
            "optimiser": str,
        }.get(k, int)(v)
    return lambda e, d, im: protect(im, encoder=e, decoder=d, progress=False, **kw).image


CACHE = ROOT / "tmp" / "protect-cache"
CACHED = {"mist-eps16", "mist-eps8"}  # fixed methods whose outputs may be reused between runs


def run_method(enc, dec, method: str, name: str, im: Image.Image) -> tuple[Image.Image, float]:
    """The method's protected image and its seconds; Mist's come from the cache when there.
    LAST_CPU holds the run's process CPU seconds (steadier than wall time on a shared CPU)."""
    path = CACHE / method / f"{name}-{im.size[0]}.png"
    if method in CACHED and path.is_file():
        meta = json.loads(path.with_suffix(".json").read_text())
        LAST_CPU[0] = float(meta.get("cpu_seconds", float("nan")))
        return Image.open(path).convert("RGB"), float(meta["seconds"])
    t0, c0 = time.perf_counter(), time.process_time()
    out = method_fn(method)(enc, dec, im)
    secs, LAST_CPU[0] = time.perf_counter() - t0, time.process_time() - c0
    if method in CACHED:
        path.parent.mkdir(parents=True, exist_ok=True)
        out.save(path)
        meta = {"seconds": secs, "cpu_seconds": LAST_CPU[0]}
        path.with_suffix(".json").write_text(json.dumps(meta))
    return out, secs


LAST_CPU = [float("nan")]


_WORKER: dict = {}


def _purify_worker_init(threads: int) -> None:
    torch.set_num_threads(threads)
    enc, dec = load_models()
    _WORKER.update(enc=enc.requires_grad_(False), dec=dec.requires_grad_(False))


def purify_image(
    name: str, im: Image.Image, methods: list[str], names: list[str], enc=None, dec=None
) -> dict[str, dict]:
    """One image: the clean side once, then every method's protected image and its purifiers."""
    import protect_purify as pp

    enc, dec = enc or _WORKER["enc"], dec or _WORKER["dec"]
    ctx = pp.Ctx(enc, dec, pp.seed_of(name))
    clean = pp.clean_side(ctx, im, names)
    rows = {}
    for method in methods:
        out, secs = run_method(enc, dec, method, name, im)
        x, y = t(im), t(out)
        rows[method] = {
            "image": name,
            "seconds": secs,
            "cpu_seconds": LAST_CPU[0],
            "psnr": psnr(y, x),
            "ssim": structural_similarity(
                np.asarray(im), np.asarray(out), channel_axis=2, data_range=255
            ),
            "clean": clean,
            "purify": pp.protected_side(ctx, im, out, clean),
        }
        kept = " ".join(
            f"{n.split(' (')[0]}={v['drop']:.2f}({v['kept']:.0%})"
            for n, v in rows[method]["purify"].items()
        )
        print(
            f"  {method:14s} {name:12s} {secs:6.1f}s PSNR {rows[method]['psnr']:.2f} {kept}",
            flush=True,
        )
    return rows


def purify(enc, dec, images: list[tuple[str, Image.Image]], methods: list[str], args) -> None:
    """--purify: every purifier on every image, for every method, in one run (--jobs N: N
    processes of threads/N torch threads, images shared among them)."""
    import protect_purify as pp

    names = list(pp.PURIFIERS) if not args.purifiers else args.purifiers.split(",")
    names = [n for n in names if n != "none"]  # the clean drop is always measured
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    t_start = time.perf_counter()
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(
            args.jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_purify_worker_init,
            initargs=(max(1, args.threads // args.jobs),),
        ) as pool:
            futures = [pool.submit(purify_image, n, im, methods, names) for n, im in images]
            per_image = [f.result() for f in futures]
    else:
        per_image = [purify_image(n, im, methods, names, enc, dec) for n, im in images]
    for rows in per_image:
        for m in methods:
            runs[m].append(rows[m])
    summary = pp.summarise(runs)
    print(
        f"\n{len(images)} images at {args.size}^2, {time.perf_counter() - t_start:.0f} s in all\n"
    )
    print("| method | PSNR dB | SSIM | s/image | CPU s/image |\n|---|---|---|---|---|")
    for m in methods:
        r = runs[m]
        print(
            f"| {m} | {np.mean([v['psnr'] for v in r]):.2f} | {np.mean([v['ssim'] for v in r]):.3f}"
            f" | {np.mean([v['seconds'] for v in r]):.1f}"
            f" | {np.mean([v['cpu_seconds'] for v in r]):.1f} |"
        )
    print()
    print(pp.table(summary, methods))
    if args.plots:
        for p in pp.plots(runs, summary, args.plots, LABELS):
            print("wrote", p)
    if args.json:
        pp.save_json(args.json, {"size": args.size, "runs": runs, "summary": summary})


def batch(enc, dec, images: list[tuple[str, Image.Image]], args) -> None:
    """--batch: the images as files in a folder, protected as `guard protect DIR` does (one
    protect_files batch: one model load, one progress bar, watermark and signature included),
    with taef2 as the model; images per minute over the whole batch."""
    import tempfile

    from guard.protection.attacks import Surrogate
    from guard.protection.models import ProtectionModel
    from guard.protection.workflow import artworks, output_for, protect_files

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GUARD_HOME"] = str(Path(tmp) / "home")  # a throwaway identity and ledger
        folder = Path(tmp) / "art"
        folder.mkdir()
        for name, im in images:
            im.save(folder / f"{name}.png")
        model = ProtectionModel(Surrogate(enc, dec), "taef2", torch.device("cpu"))
        jobs = [(src, output_for(src, Path(tmp) / "out")) for src in artworks([folder])]
        t0, c0 = time.perf_counter(), time.process_time()
        done = list(protect_files(jobs, model=model, progress=True))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(done)
    print(
        f"{n} images at {args.size}^2 in {wall:.0f} s: {60 * n / wall:.2f} images/min "
        f"({wall / n:.1f} s and {cpu / n:.1f} CPU s per image, torch threads {args.threads})"
    )


LABELS = {"guard-medium": "guard medium (default)", "mist-eps16": "Mist textural, eps 16/255"}


def figures(enc, dec, out_dir: Path, size: int) -> None:
    """docs/img/protect_*.png: for each preset, the protected image, a 4x zoom of a crop, the
    autoencoder's reconstruction and the same zoom of it; likewise for the original."""
    im = square(SHARED / "datasets" / "cset14" / "pepper.png", size)
    cell, crop = 192, (size // 2, size // 2, size // 2 + 48, size // 2 + 48)

    @torch.no_grad()
    def recon(img: Image.Image) -> Image.Image:
        return pil(dec(enc(t(img))).clamp(0, 1))

    def panel(img: Image.Image) -> Image.Image:
        rec = recon(img)
        row = Image.new("RGB", (4 * cell, cell))
        row.paste(img.resize((cell, cell), Image.LANCZOS), (0, 0))
        row.paste(img.crop(crop).resize((cell, cell), Image.NEAREST), (cell, 0))
        row.paste(rec.resize((cell, cell), Image.LANCZOS), (2 * cell, 0))
        row.paste(rec.crop(crop).resize((cell, cell), Image.NEAREST), (3 * cell, 0))
        return row

    out_dir.mkdir(parents=True, exist_ok=True)
    panel(im).save(out_dir / "protect_original.png", optimize=True)
    for name, (eps, steps) in PRESETS.items():
        prot = protect(im, encoder=enc, decoder=dec, eps=eps, steps=steps, progress=False).image
        panel(prot).save(out_dir / f"protect_{name}.png", optimize=True)
        print(
            f"figure {name}: PSNR {psnr(t(prot), t(im)):.2f} dB, reconstruction PSNR "
            f"{psnr(t(recon(prot)), t(im)):.2f} dB (original {psnr(t(recon(im)), t(im)):.2f})"
        )


def order(enc, dec, images: list[tuple[str, Image.Image]]) -> None:
    """Which order keeps both the perturbation and guard's watermark: protect then watermark
    (what `guard protect` does through publish) or watermark then protect."""
    from guard import watermark as wm

    eps, steps = PRESETS["medium"]
    print(
        "| image | order | watermark found | p-value | found after JPEG75 | drop dB | drop JPEG75 |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, im in images:
        payload = wm.new_payload()
        prot = protect(im, encoder=enc, decoder=dec, eps=eps, steps=steps, progress=False).image
        a = wm.embed(prot, payload)
        b = protect(
            wm.embed(im, payload), encoder=enc, decoder=dec, eps=eps, steps=steps, progress=False
        ).image
        for label, img in (
            ("protect only", prot),
            ("protect, then watermark", a),
            ("watermark, then protect", b),
        ):
            hit, hit_j = wm.detect(img), wm.detect(jpeg(img, 75))
            m = metrics(enc, dec, im, img)
            ok = hit.found and hit.payload == payload
            ok_j = hit_j.found and hit_j.payload == payload
            print(
                f"| {name} | {label} | {ok} | {hit.p_value:.1e} | {ok_j} | "
                f"{m['drop_none']:.2f} | {m['drop_jpeg75']:.2f} |",
                flush=True,
            )


def strategies(enc, dec, images: list[tuple[str, Image.Image]], size: int) -> None:
    """Large images: tiles at full resolution against a perturbation computed at half resolution
    (tile = working side = size/2, so the comparison is the one a 2x larger image would see).
    Disruption is measured at full size and after the 2x downscale a trainer typically applies."""
    eps, steps = PRESETS["medium"]
    print(
        "| image | strategy | PSNR dB | drop at full size | drop JPEG75 | drop after 2x downscale | s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, im in images:
        small = im.resize((size // 2, size // 2), Image.LANCZOS)
        for strat in ("tiles", "resize"):
            t0 = time.perf_counter()
            out = protect(
                im,
                encoder=enc,
                decoder=dec,
                eps=eps,
                steps=steps,
                progress=False,
                strategy=strat,
                tile=size // 2,
            ).image
            s = time.perf_counter() - t0
            m = metrics(enc, dec, im, out)
            ms = metrics(enc, dec, small, out.resize(small.size, Image.LANCZOS))
            print(
                f"| {name} | {strat} | {m['psnr']:.2f} | {m['drop_none']:.2f} | "
                f"{m['drop_jpeg75']:.2f} | {ms['drop_none']:.2f} | {s:.0f} |",
                flush=True,
            )


DEFAULT_METHODS = "mist-eps16,guard-low,guard-medium,guard-high"
PURIFY_METHODS = ["guard-medium", "mist-eps16"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=6, help="number of images (default 6)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help=f"comma list of {', '.join(METHODS)}",
    )
    ap.add_argument("--save", type=Path, help="folder for the protected PNGs")
    ap.add_argument("--figures", type=Path, help="write the docs figures to this folder and stop")
    ap.add_argument("--order", action="store_true", help="measure protect/watermark order and stop")
    ap.add_argument("--strategies", action="store_true", help="tiles vs working resolution; stop")
    ap.add_argument("--batch", action="store_true", help="images/minute of one batch; stop")
    ap.add_argument("--purify", action="store_true", help="the purification benchmark; stop")
    ap.add_argument("--purifiers", help="comma list of purifier names (default: all)")
    ap.add_argument("--paintings", type=Path, help="folder of public paintings to add (--purify)")
    ap.add_argument("--no-photos", action="store_true", help="--paintings only, no dataset photos")
    ap.add_argument("--jobs", type=int, default=1, help="--purify: processes, images shared")
    ap.add_argument("--only", help="comma list of image names to keep (--purify)")
    ap.add_argument("--plots", type=Path, help="folder for the --purify figures")
    ap.add_argument("--json", type=Path, help="write the --purify figures as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not (SHARED / "models" / "taef2").is_dir():
        sys.exit(f"needs {SHARED}/models/taef2 and {SHARED}/datasets")
    enc, dec = load_models()
    enc.requires_grad_(False)
    dec.requires_grad_(False)
    if args.figures:
        figures(enc, dec, args.figures, args.size)
        return
    if args.batch:
        batch(
            enc,
            dec,
            with_paintings(args.limit, args.size, args.paintings, not args.no_photos),
            args,
        )
        return
    if args.purify:
        methods = args.methods.split(",") if args.methods != DEFAULT_METHODS else PURIFY_METHODS
        images = with_paintings(args.limit, args.size, args.paintings, not args.no_photos)
        if args.only:
            images = [(n, im) for n, im in images if n in args.only.split(",")]
        purify(enc, dec, images, methods, args)
        return
    images = dataset(args.limit, args.size)
    if args.strategies:
        strategies(enc, dec, images, args.size)
        return
    if args.order:
        order(enc, dec, images)
        return
    print(
        f"{len(images)} images at {args.size}^2: {', '.join(n for n, _ in images)}; "
        f"torch threads {args.threads}",
        flush=True,
    )
    methods = args.methods.split(",")
    # Images outer, methods inner: on a shared CPU the load drifts, and interleaving keeps the
    # time ratio between methods fair even when the absolute seconds are not.
    res: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    secs: dict[str, list[float]] = {m: [] for m in methods}
    mem: dict[str, list[float]] = {m: [] for m in methods}
    for name, im in images:
        for method in methods:
            with PeakRSS() as rss:
                t0 = time.perf_counter()
                out = METHODS[method](enc, dec, im)
                secs[method].append(time.perf_counter() - t0)
            mem[method].append(rss.added_mb)
            res[method].append(metrics(enc, dec, im, out))
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                out.save(args.save / f"{name}.{method}.png")
            print(
                f"  {method:24s} {name:10s} {secs[method][-1]:6.1f}s "
                + " ".join(f"{k}={v:.2f}" for k, v in res[method][-1].items()),
                flush=True,
            )
    rows = []
    for method in methods:
        avg = {k: float(np.mean([r[k] for r in res[method]])) for k in res[method][0]}
        rows.append((method, avg, float(np.mean(secs[method])), float(max(mem[method]))))
    print()
    print(
        "| method | PSNR dB | SSIM | recon PSNR (orig) | drop dB | drop JPEG75 | drop JPEG50 "
        "| drop resize x0.5 | JPEG75 kept | s/image | peak MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for method, a, s, m in rows:
        kept = a["drop_jpeg75"] / a["drop_none"] if a["drop_none"] > 0 else float("nan")
        print(
            f"| {method} | {a['psnr']:.2f} | {a['ssim']:.3f} | {a['rec']:.2f} | {a['drop_none']:.2f} "
            f"| {a['drop_jpeg75']:.2f} | {a['drop_jpeg50']:.2f} | {a['drop_half']:.2f} | {kept:.0%} "
            f"| {s:.1f} | {m:.0f} |"
        )


if __name__ == "__main__":
    main()
