"""Security of guard's mark against an attacker who has read the source (bench_watermark.py
--security). Every attack here uses only what such an attacker holds: the code, the public key,
marked images, never a private key or an original.

Removal (private key, the attacker cannot detect the mark to check their work):
* period: fold the median-filter residual over the mark's public period at its public working
  resolution (128 px tiles; 512 px, v2's scramble period) and subtract the estimate;
* collusion: average the residuals of N images marked under one key (Yang et al., NeurIPS 2024),
  subtract the average;
* notch: zero the 16 public sync peaks in the spectrum; then also crop, so the detector needs them;
* band-stop: remove every frequency the mark could use (what no key can protect against).

Each is run over a grid of strengths; the cost is the PSNR of the attacked image against the
marked one; the figure of merit is detection at the attacker's best setting that still costs no
more than 38 dB.

Forgery (copy): put image A's mark on picture B and see whether verify's content check (guard
fingerprint) still refuses to apply A's record to B: re-embedding A's ID with the public key (the
perfect copy), transplanting A's residual or fold estimate, near-duplicates of A's scene.
"""

from __future__ import annotations

import io
import math
import zlib

import cv2
import numpy as np
from PIL import Image

from guard import watermark as gw
from guard.ledger import fingerprint
from guard.watermark import layout as wm_layout

PRIVATE_KEY = b"bench: a platform's private key"
WORK = 512  # the mark's public working resolution (short side)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


# ---- the attacker's tools ---------------------------------------------------------------------
def _work_luma(im: Image.Image) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    a = np.asarray(im.convert("RGB"), np.float32)
    w, h = im.size
    s = WORK / min(w, h)
    size = (round(w * s), round(h * s))
    return a, cv2.resize(a @ _LUMA, size, interpolation=cv2.INTER_AREA), size


def residual(im: Image.Image, median: int = 5) -> np.ndarray:
    """The attacker's estimate of the mark plus image noise: luma minus its median, at the
    working resolution."""
    _, luma, _ = _work_luma(im)
    return luma - cv2.medianBlur(np.clip(luma + 0.5, 0, 255).astype(np.uint8), median)


def subtract(im: Image.Image, estimate_work: np.ndarray, alpha: float) -> Image.Image:
    """Remove alpha × a working-resolution estimate from every colour channel, at full size."""
    a = np.asarray(im.convert("RGB"), np.float32)
    h, w = a.shape[:2]
    full = cv2.resize(estimate_work.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return Image.fromarray(np.clip(np.rint(a - alpha * full[..., None]), 0, 255).astype(np.uint8))


def period_estimate(im: Image.Image, period: int, median: int = 5) -> np.ndarray:
    """Fold the residual over `period` working pixels: what repeats survives, the rest averages
    away."""
    r = residual(im, median)
    h, w = r.shape
    ny, nx = max(1, h // period), max(1, w // period)
    tile = r[: ny * period, : nx * period].reshape(ny, period, nx, period).mean((0, 2))
    return np.tile(tile, (math.ceil(h / period), math.ceil(w / period)))[:h, :w]


def notch_sync(im: Image.Image) -> Image.Image:
    """Zero the public sync template's peaks (and their neighbours) in the working-resolution
    spectrum of the luma; the difference goes back into every channel."""
    _, luma, (w, h) = _work_luma(im)
    spec = np.fft.fft2(luma)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    keep = np.ones((h, w), bool)
    for kx, ky in wm_layout.SYNC_K:
        for sx, sy in ((kx, ky), (-kx, -ky)):
            near = (np.abs(fx - sx / wm_layout.TILE) <= 1.5 / w) & (
                np.abs(fy - sy / wm_layout.TILE) <= 1.5 / h
            )
            keep &= ~near
    removed = np.fft.ifft2(spec * ~keep).real
    return subtract(im, removed, 1.0)


def band_stop(im: Image.Image) -> Image.Image:
    """Take out the whole band the mark lives in (0.08-0.22 cycles per working pixel)."""
    _, luma, (w, h) = _work_luma(im)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    radius = np.hypot(fx, fy)
    band = (radius >= wm_layout.BAND[0] * 0.9) & (radius <= wm_layout.BAND[1] * 1.1)
    removed = np.fft.ifft2(np.fft.fft2(luma) * band).real
    return subtract(im, removed, 1.0)


def high_pass(im: Image.Image, median: int = 5) -> np.ndarray:
    """A full-resolution residual of every channel: the transplant's raw material."""
    a = np.asarray(im.convert("RGB"), np.float32)
    med = cv2.medianBlur(np.clip(a + 0.5, 0, 255).astype(np.uint8), median).astype(np.float32)
    return a - med


def add(im: Image.Image, delta: np.ndarray, alpha: float) -> Image.Image:
    a = np.asarray(im.convert("RGB"), np.float32)
    return Image.fromarray(np.clip(np.rint(a + alpha * delta), 0, 255).astype(np.uint8))


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def shifted(im: Image.Image, dx: float) -> Image.Image:
    """Another shot of the same scene, `dx` pixels away (and half that vertically)."""
    w, h = im.size
    return im.transform((w, h), Image.Transform.AFFINE, (1, 0, dx, 0, 1, dx / 2), Image.BICUBIC)


def psnr(a: Image.Image, b: Image.Image) -> float:
    d = np.asarray(a.convert("RGB"), np.float64) - np.asarray(b.convert("RGB"), np.float64)
    return float(10 * np.log10(255**2 / max(np.mean(d * d), 1e-12)))


# ---- the pool of images marked under one key (collusion) ------------------------------------
def pool(sources: list[Image.Image], n: int, size: int, seed: int) -> list[Image.Image]:
    """n different pictures from the sources: random crops (half to all of each side), flips,
    rescaled to size². What a platform's output looks like to someone collecting it."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        w, h = src.size
        f = rng.uniform(0.5, 1.0)
        cw, ch = round(w * f), round(h * f)
        x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        im = src.crop((x0, y0, x0 + cw, y0 + ch)).resize((size, size), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(im)
    return out


def collusion_estimate(
    pictures: list[Image.Image], version: int, seed: int, median: int = 5
) -> np.ndarray:
    """Mark every picture (random IDs, one private key) and average their residuals."""
    rng = np.random.default_rng(seed)
    total = None
    for p in pictures:
        marked = gw.embed(p, rng.bytes(8), key=PRIVATE_KEY, version=version)
        r = residual(marked, median)
        total = r if total is None else total + r
    assert total is not None
    return total / len(pictures)


# ---- one target image under every removal attack ----------------------------------------------
ALPHAS = (0.5, 1.0, 1.5, 2.0, 3.0)


def removal_job(job: dict) -> dict:
    """Every removal setting on one picture, for marks v1 and v2 under the private key."""
    cover, estimates = job["image"], job["collusion"]
    rng = np.random.default_rng(job["seed"])
    rows = []
    for version in (1, 2):
        payload = rng.bytes(8)
        marked = gw.embed(cover, payload, key=PRIVATE_KEY, version=version)

        def record(
            attack: str,
            setting: str,
            attacked: Image.Image,
            cost: Image.Image | None = None,  # what the PSNR is measured on (before a crop)
            ctx=(version, marked, payload),
        ):
            v, m, p = ctx
            d = gw.detect(attacked, key=PRIVATE_KEY)
            rows.append(
                {
                    "version": v,
                    "attack": attack,
                    "setting": setting,
                    "psnr": psnr(attacked if cost is None else cost, m),
                    "detected": bool(d.found and d.payload == p),
                }
            )

        for period in (128, 512):
            for median in (3, 5):
                est = period_estimate(marked, period, median)
                for alpha in ALPHAS:
                    record(
                        "period", f"P={period} m={median} a={alpha}", subtract(marked, est, alpha)
                    )
        for n, by_version in estimates.items():
            for alpha in (*ALPHAS, 5.0):
                record(f"collusion{n}", f"a={alpha}", subtract(marked, by_version[version], alpha))
        notched = notch_sync(marked)
        record("notch", "sync peaks", notched)
        w, h = notched.size
        record(
            "notch+crop90",
            "sync peaks",
            notched.crop((w // 20, h // 20, w - w // 20, h - h // 20)),
            cost=notched,
        )
        small = notched.resize((round(w * 0.75), round(h * 0.75)), Image.Resampling.BICUBIC)
        record("notch+resize0.75", "sync peaks", small, cost=notched)
        for sx, sy in ((1.0, 0.97), (1.0, 0.93), (1.08, 1.0)):  # one axis scaled on its own
            squashed = notched.resize((round(w * sx), round(h * sy)), Image.Resampling.BICUBIC)
            record(f"notch+aspect{sx * sy:.2f}", "sync peaks", squashed, cost=notched)
        record("band-stop", "0.07-0.24 c/px", band_stop(marked))
    return {"name": job["name"], "rows": rows}


def public_removal(images: list[tuple[str, Image.Image]], seed: int = 0) -> dict:
    """Removal when the key is public: detect, read the ID, rebuild the mark on the marked image
    itself (embedding the same ID again gives the mark's own pattern and mask, near enough) and
    subtract it. No estimate is involved, so this bounds what a public mark can promise."""
    rng = np.random.default_rng(seed)
    rows = []
    for _, cover in images:
        payload = rng.bytes(8)
        marked = gw.embed(cover, payload)
        hit = gw.detect(marked)
        if not hit.found:
            continue
        a = np.asarray(marked, np.float32)
        mark = np.asarray(gw.embed(marked, hit.payload), np.float32) - a
        for alpha in (1.0, 1.5):
            attacked = Image.fromarray(np.clip(np.rint(a - alpha * mark), 0, 255).astype(np.uint8))
            d = gw.detect(attacked)
            rows.append(
                {
                    "alpha": alpha,
                    "psnr": psnr(attacked, marked),
                    "detected": bool(d.found and d.payload == payload),
                }
            )
    out = {}
    for alpha in (1.0, 1.5):
        sel = [r for r in rows if r["alpha"] == alpha]
        out[f"a={alpha}"] = {
            "images": len(sel),
            "psnr": float(np.mean([r["psnr"] for r in sel])),
            "detected": float(np.mean([r["detected"] for r in sel])),
        }
    return out


# ---- one pair of pictures under every forgery ------------------------------------------------
def forgery_job(job: dict) -> dict:
    """A's mark put on B (and on near-duplicates of A's scene); does verify's content check
    still refuse A's record?"""
    a, b = job["a"], job["b"]
    rng = np.random.default_rng(job["seed"])
    rows = []
    for key_name, key in (("public", None), ("private", PRIVATE_KEY)):
        payload = rng.bytes(8)
        marked = gw.embed(a, payload, key=key)
        reference = fingerprint.compute(marked)

        def record(
            kind: str,
            forged: Image.Image,
            host: Image.Image,
            ctx=(key_name, key, payload, marked, reference),
        ):
            name, k, p, m, ref = ctx
            forged = jpeg(forged, 90)  # forgeries get shared too
            d = gw.detect(forged, key=k)
            hit = bool(d.found and d.payload == p)
            match = fingerprint.compare(ref, forged, d.alignment) if hit else None
            rows.append(
                {
                    "key": name,
                    "kind": kind,
                    "detected": hit,
                    "content_match": None if match is None else match.match,
                    "score": None if match is None else match.score,
                    "psnr_vs_host": psnr(forged, host) if forged.size == host.size else None,
                    "phash_distance": _phash_distance(m, forged),
                }
            )

        if key is None:  # the public key lets anyone read the ID and write it anywhere
            record("re-embed on another picture", gw.embed(b, payload), b)
            for dx in (4, 8, 16):
                moved = shifted(a, dx * a.size[0] / WORK)
                record(f"near-duplicate, {dx} px away", gw.embed(moved, payload), moved)
            # A's own marked picture, a central part replaced by B (an inpainted face, a
            # pasted object): the mark survives, so how much may change before the record's
            # claims stop applying?
            for share in (0.1, 0.25, 0.5):
                box = _box(marked.size, share**0.5)
                edited = marked.copy()
                edited.paste(b.crop(box), box[:2])
                record(f"A edited: {share:.0%} of the area replaced", edited, marked)
        hp = high_pass(marked)
        for alpha in (1.0, 2.0, 3.0):  # the attacker's best is the weakest that is detected
            record(f"residual transplant a={alpha}", add(b, hp, alpha), b)
        est = period_estimate(marked, 128, 5)
        full = cv2.resize(est.astype(np.float32), b.size, interpolation=cv2.INTER_LINEAR)
        for alpha in (1.0, 2.0, 3.0):
            record(f"fold transplant a={alpha}", add(b, full[..., None], alpha), b)
        # the genuine side, for the same pictures: stripped copies of A itself
        for name, copy in (
            ("genuine: jpeg50", jpeg(marked, 50)),
            ("genuine: crop70", marked.crop(_box(marked.size, 0.7, 0.1, 0.85))),
            (
                "genuine: rotate10+crop70",
                marked.rotate(10, Image.BICUBIC).crop(_box(marked.size, 0.7)),
            ),
            ("genuine: resize0.5", marked.resize((a.size[0] // 2, a.size[1] // 2), Image.BICUBIC)),
            ("genuine: brightness1.3", _brightness(marked, 1.3)),
        ):
            record(name, copy, marked)
    return {"name": job["name"], "rows": rows}


def _box(size: tuple[int, int], frac: float, fx: float = 0.5, fy: float = 0.5):
    w, h = size
    cw, ch = round(w * frac), round(h * frac)
    x0, y0 = round((w - cw) * fx), round((h - ch) * fy)
    return (x0, y0, x0 + cw, y0 + ch)


def _brightness(im: Image.Image, f: float) -> Image.Image:
    from PIL import ImageEnhance

    return ImageEnhance.Brightness(im).enhance(f)


def _phash_distance(a: Image.Image, b: Image.Image) -> int | None:
    """imagehash's pHash (64 bits), the maintained perceptual hash, for comparison."""
    try:
        import imagehash
    except ImportError:
        return None
    return int(imagehash.phash(a) - imagehash.phash(b))


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode())


# ---- the run and its report -------------------------------------------------------------------
def run(images: list[tuple[str, Image.Image]], sources: list[Image.Image], args) -> dict:
    """images: (name, 512² picture) targets; sources: pictures the collusion pools are cut from."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    collusion: dict[int, dict[int, np.ndarray]] = {}
    for n in args.collusion:
        pictures = pool(sources, n, WORK, seed=n)
        collusion[n] = {
            v: collusion_estimate(pictures, v, seed=1000 + n)
            for v in tqdm((1, 2), desc=f"collusion pool of {n}", unit="version")
        }
    targets = images[: args.security_targets]
    removal_jobs = [
        {"name": n, "image": im, "collusion": collusion, "seed": seed_of(n)} for n, im in targets
    ]
    forgery_jobs = [
        {"name": n, "a": im, "b": images[(i + 1) % len(images)][1], "seed": seed_of(n) + 1}
        for i, (n, im) in enumerate(images)
    ]
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        removal = list(
            tqdm(ex.map(removal_job, removal_jobs), total=len(removal_jobs), desc="removal")
        )
        forgery = list(
            tqdm(ex.map(forgery_job, forgery_jobs), total=len(forgery_jobs), desc="forgery")
        )
    return {
        "removal": [r for job in removal for r in job["rows"]],
        "forgery": [r for job in forgery for r in job["rows"]],
        "targets": len(targets),
        "pairs": len(forgery_jobs),
        "collusion": list(args.collusion),
    }


def removal_table(rows: list[dict]) -> dict:
    """Per version and attack: every setting's (mean PSNR, detection), and the attacker's best
    setting at a cost of 38 dB or less (the lowest detection among them)."""
    from collections import defaultdict

    cells: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        cells[(r["version"], r["attack"])][r["setting"]].append(r)
    out: dict = {}
    for (version, attack), settings in cells.items():
        points = {
            s: (
                float(np.mean([r["psnr"] for r in rs])),
                float(np.mean([r["detected"] for r in rs])),
            )
            for s, rs in settings.items()
        }
        cheap = {s: p for s, p in points.items() if p[0] >= 38.0}
        best = min(cheap.items(), key=lambda kv: kv[1][1]) if cheap else None
        out.setdefault(attack, {})[version] = {"points": points, "best": best}
    return out


def print_security(result: dict) -> None:
    table = removal_table(result["removal"])
    print(f"\n### Removal under a private key ({result['targets']} images, 512²)\n")
    print(
        "| attack | v1: detection at the best attack ≥ 38 dB | v2: detection at the best attack ≥ 38 dB |"
    )
    print("|---|---|---|")
    for attack, by_version in table.items():
        cells = []
        for v in (1, 2):
            best = by_version.get(v, {}).get("best")
            cells.append(
                f"{best[1][1]:.2f} ({best[0]}, {best[1][0]:.1f} dB)"
                if best
                else "no setting ≥ 38 dB"
            )
        print(f"| {attack} | {cells[0]} | {cells[1]} |")
    print(f"\n### Forgery: A's mark on another picture ({result['pairs']} pairs, 512², JPEG 90)\n")
    print("| key | forgery | n | A's ID detected | content match (claims applied) | pHash ≤ 10 |")
    print("|---|---|---|---|---|---|")
    from collections import defaultdict

    groups: dict = defaultdict(list)
    for r in result["forgery"]:
        groups[(r["key"], r["kind"])].append(r)
    for (key, kind), rs in groups.items():
        det = np.mean([r["detected"] for r in rs])
        match = np.mean([r["content_match"] is True for r in rs])
        ph = [r["phash_distance"] for r in rs if r["phash_distance"] is not None]
        phm = f"{np.mean([d <= 10 for d in ph]):.2f}" if ph else "n/a"
        print(f"| {key} | {kind} | {len(rs)} | {det:.2f} | {match:.3f} | {phm} |")


def plot_security(result: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = removal_table(result["removal"])
    families = [a for a in table if not a.startswith("notch") and a != "band-stop"]
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.6), sharey=True)
    for ax, attack in zip(np.atleast_1d(axes), families, strict=True):
        for v, style in ((1, "o--"), (2, "s-")):
            # the attacker's frontier: at each cost, the best setting that costs no more
            pts = sorted(table[attack].get(v, {}).get("points", {}).values(), reverse=True)
            if pts:
                x = [p for p, _ in pts]
                y = np.minimum.accumulate([d for _, d in pts])
                ax.plot(x, y, style, label=f"mark v{v}", alpha=0.85, drawstyle="steps-post")
        ax.axvline(38, color="grey", lw=0.8, ls=":")
        ax.set_title(attack)
        ax.set_xlabel("attacked vs marked, PSNR dB")
        ax.invert_xaxis()
        ax.set_ylim(-0.03, 1.03)
    np.atleast_1d(axes)[0].set_ylabel("detection, best attack this cheap")
    np.atleast_1d(axes)[0].legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
