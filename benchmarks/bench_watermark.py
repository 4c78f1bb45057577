"""Watermark robustness, invisibility, false positives and speed: guard vs invisible-watermark.

    python benchmarks/bench_watermark.py                      # full run (long: see docs/benchmarks.md)
    python benchmarks/bench_watermark.py --limit 8 --riva-limit 0 --jobs 2   # quick look
    python benchmarks/bench_watermark.py --folder my_images/  # also your own images, native size

Every dataset image (../shared/datasets) is rescaled to 512² and 1024² and marked by each method
with a random message; every attack is applied to the marked image and the detector gets the
result as is. Baselines: invisible-watermark dwtDct and dwtDctSvd with 48 bits and rivaGan with
32 bits, each counted as detected when its bit agreement is improbable at p <= 1e-6 (binomial),
and exact when every bit is right. The same attacks on the unmarked images give the
false-positive count. Speed is timed on one core (OpenCV, OpenMP and BLAS threads set to 1).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import sys
import time
import zlib
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# One thread everywhere, set before numpy/OpenCV load, so timings mean "one core".
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageEnhance  # noqa: E402

cv2.setNumThreads(1)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guard import watermark as gw  # noqa: E402
from guard.watermark import stats  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
DOCS_IMG = ROOT / "docs" / "img"


# ---- the attack suite --------------------------------------------------------------------------
def _encode(im: Image.Image, fmt: str, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, fmt, quality=quality)
    buf.seek(0)
    return Image.open(buf).convert(im.mode)


def _resize(im: Image.Image, f: float) -> Image.Image:
    w, h = im.size
    return im.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BICUBIC)


def _crop(im: Image.Image, frac: float, fx: float = 0.5, fy: float = 0.5) -> Image.Image:
    w, h = im.size
    cw, ch = round(w * frac), round(h * frac)
    x0, y0 = round((w - cw) * fx), round((h - ch) * fy)
    return im.crop((x0, y0, x0 + cw, y0 + ch))


def _blur(im: Image.Image, sigma: float) -> Image.Image:
    return Image.fromarray(cv2.GaussianBlur(np.asarray(im), (0, 0), sigma))


def _noise(im: Image.Image, sigma: float) -> Image.Image:
    a = np.asarray(im).astype(np.float32)
    rng = np.random.default_rng(zlib.crc32(a[::37, ::41].tobytes()))
    return Image.fromarray(
        np.clip(np.rint(a + rng.normal(0, sigma, a.shape)), 0, 255).astype(np.uint8)
    )


def _squash(im: Image.Image, sx: float, sy: float) -> Image.Image:
    """Each axis scaled on its own (a 4:5 crop resized to a square, a stretched thumbnail), then
    an off-centre crop to 85% and JPEG 75."""
    w, h = im.size
    out = im.resize((round(w * sx), round(h * sy)), Image.Resampling.BICUBIC)
    return _encode(_crop(out, 0.85, 0.3, 0.6), "JPEG", 75)


def _shear(im: Image.Image, degrees: float, vertical: bool = False) -> Image.Image:
    """A shear about the centre, then the same crop to 85% (which also cuts the empty corners)
    and JPEG 75."""
    t, (w, h) = math.tan(math.radians(degrees)), im.size
    data = (1, 0, 0, t, 1, -t * w / 2) if vertical else (1, t, -t * h / 2, 0, 1, 0)
    out = im.transform(im.size, Image.Transform.AFFINE, data, Image.Resampling.BICUBIC)
    return _encode(_crop(out, 0.85, 0.3, 0.6), "JPEG", 75)


ATTACKS = {
    "none": lambda im: im,
    "jpeg90": lambda im: _encode(im, "JPEG", 90),
    "jpeg75": lambda im: _encode(im, "JPEG", 75),
    "jpeg50": lambda im: _encode(im, "JPEG", 50),
    "webp75": lambda im: _encode(im, "WEBP", 75),
    "resize0.5": lambda im: _resize(im, 0.5),
    "resize0.5+back": lambda im: _resize(im, 0.5).resize(im.size, Image.Resampling.BICUBIC),
    "resize1.5": lambda im: _resize(im, 1.5),
    "crop80": lambda im: _crop(im, 0.8),
    "crop70-offcentre": lambda im: _crop(im, 0.7, 0.1, 0.85),
    "blur1": lambda im: _blur(im, 1.0),
    "noise5": lambda im: _noise(im, 5.0),
    "brightness1.3": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "contrast0.7": lambda im: ImageEnhance.Contrast(im).enhance(0.7),
    "rotate3+crop85": lambda im: _crop(im.rotate(3, Image.Resampling.BICUBIC), 0.85),
    "social": lambda im: _encode(_resize(im, 0.75), "JPEG", 80),
    "aspect-y0.90+crop85+jpeg75": lambda im: _squash(im, 1.0, 0.90),
    "aspect-x1.10+crop85+jpeg75": lambda im: _squash(im, 1.10, 1.0),
    "shear5+crop85+jpeg75": lambda im: _shear(im, 5.0),
    "vshear-5+crop85+jpeg75": lambda im: _shear(im, -5.0, vertical=True),
}
_TAEF2 = DATASETS.parent / "models" / "taef2"
_vae: list = []


def _regenerate(im: Image.Image) -> Image.Image:
    """Encode and decode through a trained latent autoencoder (taef2), as diffusion regeneration does."""
    import torch

    if not _vae:
        torch.set_num_threads(1)
        _vae.extend(
            torch.export.load(str(_TAEF2 / f"taef2_{p}.pt2")).module()
            for p in ("encoder", "decoder")
        )
    enc, dec = _vae
    w, h = im.size
    x = torch.from_numpy(np.asarray(im.convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
    x = x[:, :, : h // 8 * 8, : w // 8 * 8]
    with torch.no_grad():
        y = dec(enc(x)).clamp(0, 1)
    return Image.fromarray((y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


# Beyond the targets, to document the limits (run with --limits).
LIMITS = {
    "crop50": lambda im: _crop(im, 0.5),
    "crop35": lambda im: _crop(im, 0.35),
    "rotate10+crop70": lambda im: _crop(im.rotate(10, Image.Resampling.BICUBIC), 0.7),
    "rotate30+crop60": lambda im: _crop(im.rotate(30, Image.Resampling.BICUBIC), 0.6),
    "resize0.3": lambda im: _resize(im, 0.3),
    "jpeg30": lambda im: _encode(im, "JPEG", 30),
    "jpeg20": lambda im: _encode(im, "JPEG", 20),
    "blur2": lambda im: _blur(im, 2.0),
    "noise15": lambda im: _noise(im, 15.0),
    "flip": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "aspect0.8": lambda im: im.resize(
        (im.size[0], round(im.size[1] * 0.8)), Image.Resampling.BICUBIC
    ),
    "rotate90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
}
if (_TAEF2 / "taef2_encoder.pt2").is_file():
    ATTACKS["regenerate-taef2"] = _regenerate  # the benign suite: a VAE round trip


# ---- methods -------------------------------------------------------------------------------------
def min_agreement(n_bits: int, alpha: float = 1e-6) -> int:
    """Fewest matching bits out of n that a random image reaches with probability <= alpha."""
    return next(
        k for k in range(n_bits + 1) if stats.log10_binomial_tail(n_bits, k) <= math.log10(alpha)
    )


class Guard:
    name = "guard"

    def embed(self, im: Image.Image, rng: np.random.Generator):
        msg = rng.bytes(8)
        return gw.embed(im, msg), msg

    def detect(self, im: Image.Image, msg: bytes | None):
        d = gw.detect(im)
        self.last = d
        return d.found, d.found and d.payload == msg


class InvisibleWatermark:
    """invisible-watermark with a random message and a binomial threshold at ~1e-6."""

    def __init__(self, method: str, n_bits: int) -> None:
        self.method, self.n_bits = method, n_bits
        self.name = f"{method}-{n_bits}"
        self.k = min_agreement(n_bits)
        if method == "rivaGan":
            self._load_riva()

    @staticmethod
    def _load_riva() -> None:
        import onnxruntime
        from imwatermark.rivaGan import RivaWatermark

        if RivaWatermark.encoder is None:
            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            folder = Path(sys.modules["imwatermark.rivaGan"].__file__).parent
            for part in ("encoder", "decoder"):
                session = onnxruntime.InferenceSession(
                    str(folder / f"rivagan_{part}.onnx"), opts, providers=["CPUExecutionProvider"]
                )
                setattr(RivaWatermark, part, session)

    def embed(self, im: Image.Image, rng: np.random.Generator):
        from imwatermark import WatermarkEncoder

        bits = [int(b) for b in rng.integers(0, 2, self.n_bits)]
        enc = WatermarkEncoder()
        enc.set_watermark("bits", bits)
        bgr = np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])
        out = enc.encode(bgr, self.method)
        return Image.fromarray(np.ascontiguousarray(out[:, :, ::-1])), bits

    def detect(self, im: Image.Image, bits):
        from imwatermark import WatermarkDecoder

        w, h = im.size
        if w * h < 256 * 256:
            return False, False
        dec = WatermarkDecoder("bits", self.n_bits)
        bgr = np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])
        got = np.array(dec.decode(bgr, self.method), int)
        if bits is None:  # unmarked image: agreement with any fixed message is as good as random
            bits = [0, 1] * (self.n_bits // 2)
        agree = int((got == np.array(bits)).sum())
        return agree >= self.k, agree == self.n_bits


def make_methods(names: list[str]):
    table = {
        "guard": lambda: Guard(),
        "dwtDct": lambda: InvisibleWatermark("dwtDct", 48),
        "dwtDctSvd": lambda: InvisibleWatermark("dwtDctSvd", 48),
        "rivaGan": lambda: InvisibleWatermark("rivaGan", 32),
    }
    return {n: table[n]() for n in names}


# ---- one image -----------------------------------------------------------------------------------
def _score(d) -> float:
    """-log10 p: the detector's evidence, for ROC figures (TPR at a fixed FPR)."""
    return float(-math.log10(max(d.p_value, 1e-300)))


def run_image(job: dict) -> dict:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    cover = job["image"]
    attacks = {**ATTACKS, **(LIMITS if job["limits"] else {})}
    methods = make_methods(job["methods"])
    rng = np.random.default_rng(job["seed"])
    out: dict = {"group": job["group"], "name": job["name"], "methods": {}}
    a = np.asarray(cover)
    for name, method in methods.items():
        marked, msg = method.embed(cover, rng)
        m = np.asarray(marked.convert("RGB"))
        res = {
            "psnr": float(peak_signal_noise_ratio(a, m, data_range=255)),
            "ssim": float(structural_similarity(a, m, channel_axis=2, data_range=255)),
            "detected": {},
            "exact": {},
            "false_positive": {},
        }
        if name == "guard":
            from guard.ledger import fingerprint

            reference = fingerprint.compute(marked)
            res.update(score={}, unmarked_score={}, content_match={})
        for attack, fn in attacks.items():
            copy = fn(marked)
            found, exact = method.detect(copy, msg)
            res["detected"][attack], res["exact"][attack] = bool(found), bool(exact)
            if name == "guard":  # -log10 p for the ROC, and verify's content check
                res["score"][attack] = _score(method.last)
                if exact:
                    match = fingerprint.compare(reference, copy, method.last.alignment).match
                    res["content_match"][attack] = bool(match)
            if attack in ATTACKS:  # false positives are counted on the target suite
                res["false_positive"][attack] = bool(method.detect(fn(cover), None)[0])
                if name == "guard":
                    res["unmarked_score"][attack] = _score(method.last)
        out["methods"][name] = res
    return out


def load_images(limit: int | None, folder: Path | None, sizes: list[int]):
    files = sorted(DATASETS.glob("*/*.png"))
    if limit:
        step = max(1, len(files) // limit)
        files = files[::step][:limit]
    images = []
    for size in sizes:
        for f in files:
            im = Image.open(f).convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
            images.append((f"{size}²", f.stem, im))
    if folder:
        for f in sorted(
            p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp")
        ):
            im = Image.open(f).convert("RGB")
            if min(im.size) >= gw.MIN_SIDE:
                images.append((f"folder {folder.name}", f.stem, im))
    return images


# ---- speed ---------------------------------------------------------------------------------------
def time_guard(images: list[Image.Image], repeats: int = 3) -> tuple[float, ...]:
    """Median embed, detect (marked) and detect (unmarked: every pose tried) in ms, and the
    slowest unmarked detect."""
    te, td, tu = [], [], []
    for im in images:
        payload = gw.new_payload()
        marked = gw.embed(im, payload)
        for _ in range(repeats):
            t = time.perf_counter()
            gw.embed(im, payload)
            te.append(time.perf_counter() - t)
            t = time.perf_counter()
            gw.detect(marked)
            td.append(time.perf_counter() - t)
            t = time.perf_counter()
            gw.detect(im)
            tu.append(time.perf_counter() - t)
    med = statistics.median
    return 1000 * med(te), 1000 * med(td), 1000 * med(tu), 1000 * max(tu)


# ---- report --------------------------------------------------------------------------------------
def summarise(results: list[dict], methods: list[str]) -> dict:
    groups: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in results:
        for m, res in r["methods"].items():
            g = groups[r["group"]][m]
            g["psnr"].append(res["psnr"])
            g["ssim"].append(res["ssim"])
            for attack in res["detected"]:
                g["det:" + attack].append(res["detected"][attack])
                g["exact:" + attack].append(res["exact"][attack])
            g["fp"].extend(res["false_positive"].values())
            for attack, ok in res.get("content_match", {}).items():
                g["match:" + attack].append(ok)
            g["scores"].extend(res.get("score", {}).values())
            g["unmarked_scores"].extend(res.get("unmarked_score", {}).values())
    summary = {}
    for group, per_method in groups.items():
        summary[group] = {}
        for m, g in per_method.items():
            attacks = [k[4:] for k in g if k.startswith("det:")]
            summary[group][m] = {
                "images": len(g["psnr"]),
                "psnr": float(np.mean(g["psnr"])),
                "psnr_min": float(np.min(g["psnr"])),
                "ssim": float(np.mean(g["ssim"])),
                "ssim_min": float(np.min(g["ssim"])),
                "false_positives": int(np.sum(g["fp"])),
                "unmarked_variants": len(g["fp"]),
                "detected": {a: float(np.mean(g["det:" + a])) for a in attacks},
                "exact": {a: float(np.mean(g["exact:" + a])) for a in attacks},
            }
            if g["scores"]:
                summary[group][m].update(_roc(g, attacks))
    return summary


def _roc(g: dict, attacks: list[str]) -> dict:
    """WAVES-style: TPR at 0.1% FPR (threshold from the unmarked variants' scores) and at the
    analytic 1e-6 (guard's own p-value threshold), plus the content-check rate per attack."""
    scores, null = np.array(g["scores"]), np.array(g["unmarked_scores"])
    at_01 = float(np.quantile(null, 0.999)) if len(null) else math.inf
    return {
        "tpr_at_0.1pct_fpr": float(np.mean(scores > at_01)),
        "threshold_0.1pct_fpr": at_01,
        "tpr_at_1e-6": float(np.mean(scores >= 6)),
        "scored": len(scores),
        "unmarked_scored": len(null),
        "content_match": {
            a: float(np.mean(g["match:" + a])) for a in attacks if g.get("match:" + a)
        },
    }


def print_tables(summary: dict, methods: list[str], speed: dict) -> None:
    """Markdown tables, one per image group, ready to paste into docs/benchmarks.md."""
    names = {"guard": "guard", "dwtDct": "dwtDct 48 bit", "dwtDctSvd": "dwtDctSvd 48 bit"}
    names["rivaGan"] = "rivaGan 32 bit"
    for group, per_method in summary.items():
        present = [m for m in methods if m in per_method]
        print(f"\n### {group}: detection rate / exact payload rate\n")
        head = " | ".join(f"{names[m]} (n={per_method[m]['images']})" for m in present)
        print(f"| attack | {head} |")
        print("|---" * (len(present) + 1) + "|")
        for a in per_method[present[0]]["detected"]:
            cells = " | ".join(
                f"{per_method[m]['detected'][a]:.2f} / {per_method[m]['exact'][a]:.2f}"
                if a in per_method[m]["detected"]
                else ""
                for m in present
            )
            print(f"| {a} | {cells} |")
        rows = [
            ("PSNR dB, mean (min)", lambda s: f"{s['psnr']:.2f} ({s['psnr_min']:.1f})"),
            ("SSIM, mean (min)", lambda s: f"{s['ssim']:.4f} ({s['ssim_min']:.3f})"),
            ("false positives", lambda s: f"{s['false_positives']} / {s['unmarked_variants']}"),
        ]
        for label, fmt in rows:
            print(f"| {label} | " + " | ".join(fmt(per_method[m]) for m in present) + " |")
        g = per_method.get("guard", {})
        if "tpr_at_1e-6" in g:
            print(
                f"\nguard, all attacks pooled ({g['scored']} marked copies, {g['unmarked_scored']} "
                f"unmarked variants): TPR {g['tpr_at_0.1pct_fpr']:.3f} at 0.1% FPR (empirical "
                f"threshold -log10 p > {g['threshold_0.1pct_fpr']:.2f}), TPR {g['tpr_at_1e-6']:.3f} "
                "at FPR 1e-6 (the analytic bound)"
            )
            cm = g["content_match"]
            worst = min(cm.items(), key=lambda kv: kv[1]) if cm else None
            if worst:
                pooled = np.mean(list(cm.values()))
                print(
                    f"content check on detected copies: mean {pooled:.3f} match, weakest "
                    f"{worst[0]} {worst[1]:.3f}"
                )
        if group in speed:
            e, d, *unmarked = speed[group]
            print(f"\nguard on one core: median embed {e:.0f} ms, median detect {d:.0f} ms")
            if unmarked:
                print(f"unmarked: median detect {unmarked[0]:.0f} ms, slowest {unmarked[1]:.0f} ms")


# ---- figures for docs/watermark.md ---------------------------------------------------------------
def _label(im: Image.Image, text: str) -> Image.Image:
    from PIL import ImageDraw

    out = Image.new("RGB", (im.width, im.height + 18), "white")
    out.paste(im, (0, 18))
    ImageDraw.Draw(out).text((4, 3), text, fill="black")
    return out


def make_figures(folder: Path) -> None:
    """Before/after crops of flat and dark regions, the difference amplified, and the tile."""
    folder.mkdir(parents=True, exist_ok=True)
    crops = {
        "flat": ("cbsd68/3096.png", (40, 40, 200, 200)),  # overcast sky
        "dark": ("cbsd68/167062.png", (300, 20, 460, 180)),  # forest in shadow
        "bright": ("cbsd68/167062.png", (300, 380, 460, 500)),  # sunlit snow
    }
    for name, (rel, box) in crops.items():
        cover = (
            Image.open(DATASETS / rel).convert("RGB").resize((512, 512), Image.Resampling.LANCZOS)
        )
        marked = gw.embed(cover, bytes.fromhex("9f3a0c1e5b7d2468"))
        a = np.asarray(cover.crop(box), np.float32)
        b = np.asarray(marked.crop(box), np.float32)
        diff = Image.fromarray(np.clip(128 + 10 * (b - a), 0, 255).astype(np.uint8))
        psnr = 10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-9))
        panels = [
            _label(cover.crop(box), "original"),
            _label(marked.crop(box), f"marked ({psnr:.1f} dB here)"),
            _label(diff, "difference x10"),
        ]
        panels = [p.resize((p.width * 2, p.height * 2), Image.Resampling.NEAREST) for p in panels]
        sheet = Image.new("RGB", (sum(p.width for p in panels) + 16, panels[0].height), "white")
        x = 0
        for p in panels:
            sheet.paste(p, (x, 0))
            x += p.width + 8
        sheet.save(folder / f"watermark_{name}.png", optimize=True)
    from guard.watermark import code, convolutional, scramble
    from guard.watermark.layout import keyed

    chips = convolutional.encode(bytes(8))
    signs = scramble.signs(gw.DEFAULT_KEY, code.N_PAYLOAD_CHIPS)
    layout = keyed(gw.DEFAULT_KEY, code.N_PAYLOAD_CHIPS, 2)
    tiles = np.stack([layout.tile(chips * signs[i]) for i in range(scramble.N_SLOT)])
    tile = tiles[0]
    t = Image.fromarray(np.clip(128 + 40 * tile, 0, 255).astype(np.uint8))
    spec = np.fft.fftshift(np.abs(np.fft.fft2(tile)))
    s = Image.fromarray((255 * spec / spec.max()).clip(0, 255).astype(np.uint8))
    grid = scramble.pattern(tiles, (512, 512))
    g = Image.fromarray(np.clip(128 + 40 * grid, 0, 255).astype(np.uint8))
    panels = [
        _label(t.resize((256, 256), Image.Resampling.NEAREST), "one tile (128 px)"),
        _label(s.resize((256, 256), Image.Resampling.NEAREST), "its spectrum: chips + sync peaks"),
        _label(g.resize((256, 256), Image.Resampling.BILINEAR), "16 tiles: no two alike"),
    ]
    sheet = Image.new("RGB", (3 * 264 - 8, panels[0].height), "white")
    for i, panel in enumerate(panels):
        sheet.paste(panel, (264 * i, 0))
    sheet.save(folder / "watermark_tile.png", optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--limit", type=int, help="use only this many dataset images (evenly spaced)")
    p.add_argument(
        "--riva-limit", type=int, default=4, help="images per size for rivaGan (slow); 0 skips it"
    )
    p.add_argument("--sizes", default="512,1024", help="square sizes to rescale the datasets to")
    p.add_argument(
        "--folder", type=Path, help="also run on the images in this folder, at their own size"
    )
    p.add_argument("--methods", default="guard,dwtDct,dwtDctSvd,rivaGan")
    p.add_argument(
        "--limits", action="store_true", help="also run the harder attacks that map the limits"
    )
    p.add_argument("--jobs", type=int, default=1, help="worker processes (each single-threaded)")
    p.add_argument(
        "--speed-images", type=int, default=10, help="images timed per size; 0 skips timing"
    )
    p.add_argument(
        "--speed-only", action="store_true", help="only time guard (no attacks, no baselines)"
    )
    p.add_argument("--json", type=Path, help="write the summary as JSON here")
    p.add_argument(
        "--figures", action="store_true", help="only write the docs/img/watermark_* figures"
    )
    p.add_argument("--report", type=Path, help="only print the tables of a saved --json file")
    p.add_argument(
        "--merge",
        type=Path,
        action="append",
        default=[],
        help="with --report: take the methods the report lacks from this saved --json file",
    )
    p.add_argument(
        "--security",
        action="store_true",
        help="the attacks of an attacker who has read the source (removal, collusion, forgery)",
    )
    p.add_argument(
        "--collusion",
        default="100,1000",
        help="with --security: how many images each averaging attack pools",
    )
    p.add_argument(
        "--security-targets", type=int, default=24, help="with --security: images attacked"
    )
    p.add_argument(
        "--public-removal",
        action="store_true",
        help="with --security: only the removal of a public-key mark (rebuilt from its ID)",
    )
    p.add_argument(
        "--content",
        action="store_true",
        help="whether a record's claims reach only its own picture (collages, edits, copies)",
    )
    args = p.parse_args(argv)
    if args.security:
        return _security(args)
    if args.content:
        return _content(args)
    if args.figures:
        make_figures(DOCS_IMG)
        return 0
    if args.report:
        from plot_watermark import merged_summary

        saved = json.loads(args.report.read_text())
        summary = merged_summary([str(args.report), *map(str, args.merge)])
        print_tables(summary, ["guard", "dwtDct", "dwtDctSvd", "rivaGan"], saved["speed_ms"])
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    images = load_images(args.limit, args.folder, sizes)
    jobs = []
    per_group: dict = defaultdict(int)
    for i, (group, name, im) in enumerate(images):
        use = [m for m in methods if m != "rivaGan" or per_group[group] < args.riva_limit]
        per_group[group] += 1
        jobs.append(
            {
                "group": group,
                "name": name,
                "image": im,
                "methods": use,
                "seed": i,
                "limits": args.limits,
            }
        )

    if args.speed_only:
        for group in dict.fromkeys(g for g, _, _ in images):
            sample = [im for g, _, im in images if g == group][: args.speed_images]
            e, d, u, worst = time_guard(sample)
            print(
                f"{group} on one core: median embed {e:.0f} ms, detect {d:.0f} ms (marked), "
                f"{u:.0f} ms (unmarked, slowest {worst:.0f} ms)"
            )
        return 0

    from tqdm import tqdm

    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for r in tqdm(pool.map(run_image, jobs), total=len(jobs), desc="images", unit="img"):
            results.append(r)
    speed = {}
    if args.speed_images and "guard" in methods:
        for group in dict.fromkeys(g for g, _, _ in images):
            sample = [im for g, _, im in images if g == group][: args.speed_images]
            speed[group] = time_guard(sample)
    summary = summarise(results, methods)
    print_tables(summary, methods, speed)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "speed_ms": speed, "images": results}))
    return 0


def _content(args: argparse.Namespace) -> int:
    import content_regions as cr

    small = load_images(args.limit, None, [512])
    big = load_images(args.limit, None, [1024])
    images = [(n, a, b) for (_, n, a), (_, _, b) in zip(small, big, strict=True)]
    rows = cr.run(images, args.jobs)
    cr.print_table(rows)
    cr.picture(images[0][1], images[1][1], DOCS_IMG / "content_regions.jpg")
    if args.json:
        args.json.write_text(json.dumps(rows))
    return 0


def _security(args: argparse.Namespace) -> int:
    import watermark_security as ws

    if args.public_removal:
        images = [(n, im) for _, n, im in load_images(args.limit, None, [ws.WORK])]
        print(json.dumps(ws.public_removal(images[: args.security_targets]), indent=1))
        return 0

    if args.report:
        result = json.loads(args.report.read_text())
    else:
        args.collusion = [int(n) for n in str(args.collusion).split(",") if n]
        images = [(n, im) for _, n, im in load_images(args.limit, None, [ws.WORK])]
        sources = [Image.open(f).convert("RGB") for f in sorted(DATASETS.glob("*/*.png"))]
        result = ws.run(images, sources, args)
        if args.json:
            args.json.write_text(json.dumps(result))
    ws.print_security(result)
    ws.plot_security(result, DOCS_IMG / "watermark_security.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
