"""Purification benchmark for `bench_protect.py --purify`: how much of a protection's effect is
left after the purifiers that published work uses to strip Glaze, Mist and Anti-DreamBooth.

For each image x, protected image x' and purifier P, with R = D(E(.)) the taef2 round trip:

    drop after P = PSNR(R(P(x)), x) - PSNR(R(P(x')), x)        kept = drop after P / drop before

The same noise draw is used for x and x' (paired), so the difference is the protection's alone.
Beside it: what P costs an unprotected picture (PSNR(P(x), x)) and how close the purified
protected picture is to the original (PSNR(P(x'), x)): a purifier that "keeps" the drop only
because it ruins the picture is no purifier.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter


@dataclass
class Ctx:
    """What a purifier may use: the stand-in autoencoder and a seed for its noise."""

    enc: Any
    dec: Any
    seed: int


def _arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255


def _img(a: np.ndarray) -> Image.Image:
    return Image.fromarray((a.clip(0, 1) * 255).round().astype(np.uint8))


def noise(sigma: float) -> Callable[[Image.Image, Ctx], Image.Image]:
    def f(im: Image.Image, ctx: Ctx) -> Image.Image:
        a = _arr(im)
        rng = np.random.default_rng(ctx.seed)
        return _img(a + rng.normal(0, sigma, a.shape).astype(np.float32))

    return f


def jpeg(q: int) -> Callable[[Image.Image, Ctx], Image.Image]:
    def f(im: Image.Image, ctx: Ctx) -> Image.Image:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=q)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    return f


def resize(s: float) -> Callable[[Image.Image, Ctx], Image.Image]:
    def f(im: Image.Image, ctx: Ctx) -> Image.Image:
        w, h = im.size
        small = im.resize((round(w * s), round(h * s)), Image.Resampling.BICUBIC)
        return small.resize((w, h), Image.Resampling.BICUBIC)

    return f


def median(im: Image.Image, ctx: Ctx) -> Image.Image:
    return im.filter(ImageFilter.MedianFilter(3))


def bilateral(im: Image.Image, ctx: Ctx) -> Image.Image:
    import cv2

    # OpenCV's documented example setting: 9 px neighbourhood, sigma 75 in colour and space
    return Image.fromarray(cv2.bilateralFilter(np.asarray(im.convert("RGB")), 9, 75, 75))


def _t(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(_arr(im)).permute(2, 0, 1)[None]


def _pil(x: torch.Tensor) -> Image.Image:
    return _img(x[0].detach().clamp(0, 1).permute(1, 2, 0).numpy())


def round_trip(im: Image.Image, ctx: Ctx) -> Image.Image:
    """The taef2 round trip, the autoencoder stage of diffusion purification / noisy upscaling."""
    with torch.no_grad():
        return _pil(ctx.dec(ctx.enc(_t(im))))


def then(
    *fs: Callable[[Image.Image, Ctx], Image.Image],
) -> Callable[[Image.Image, Ctx], Image.Image]:
    def f(im: Image.Image, ctx: Ctx) -> Image.Image:
        for g in fs:
            im = g(im, ctx)
        return im

    return f


def impress(
    im: Image.Image, ctx: Ctx, steps: int = 24, tv: float = 0.03, consistency: float = 1.0
) -> Image.Image:
    """IMPRESS-style purification in its simple form: starting from the protected picture y,
    minimise ||x - y||^2 + tv * TV(x) + consistency * ||x - JPEG75(x)||^2 by Adam (24 steps of 1.5/255):
    a picture close to y, smooth, and one that JPEG no longer changes (IMPRESS asks the same of
    the autoencoder; JPEG is the model-free form)."""
    from kornia.enhance import jpeg_codec_differentiable

    y = _t(im)
    x = y.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=1.5 / 255)
    q = torch.full((1,), 75.0)
    for _ in range(steps):
        xc = x.clamp(0, 1)
        tv_loss = (xc[..., 1:, :] - xc[..., :-1, :]).abs().mean() + (
            xc[..., :, 1:] - xc[..., :, :-1]
        ).abs().mean()
        h, w = xc.shape[-2:]
        xp = F.pad(xc, (0, (-w) % 16, 0, (-h) % 16), mode="replicate")
        jp = jpeg_codec_differentiable(xp, q)[..., :h, :w]
        loss = F.mse_loss(xc, y) + tv * tv_loss + consistency * F.mse_loss(xc, jp)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _pil(x)


PURIFIERS: dict[str, Callable[[Image.Image, Ctx], Image.Image]] = {
    "noise 2/255": noise(2 / 255),
    "noise 4/255": noise(4 / 255),
    "noise 8/255": noise(8 / 255),
    "noise 0.05": noise(0.05),
    "JPEG 90": jpeg(90),
    "JPEG 75": jpeg(75),
    "JPEG 50": jpeg(50),
    "resize x0.75": resize(0.75),
    "resize x0.5": resize(0.5),
    "median 3x3": median,
    "bilateral 9/75/75": bilateral,
    "taef2 round trip": round_trip,
    "noise 0.05 + taef2": then(noise(0.05), round_trip),
    "chain (noise 4 → x0.5 → JPEG 75)": then(noise(4 / 255), resize(0.5), jpeg(75)),
    "IMPRESS (TV + JPEG consistency)": impress,
}
# the targets for the default preset (share of the drop kept)
TARGETS = {
    "chain (noise 4 → x0.5 → JPEG 75)": 0.5,
    "noise 8/255": 0.6,
    "JPEG 75": 0.8,
    "taef2 round trip": 0.6,
}


def seed_of(name: str) -> int:
    return zlib.crc32(name.encode())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(F.mse_loss(a.clamp(0, 1), b.clamp(0, 1)).clamp_min(1e-12)))


@torch.no_grad()
def rec_psnr(ctx: Ctx, im: Image.Image, ref: torch.Tensor) -> float:
    return psnr(ctx.dec(ctx.enc(_t(im))), ref)


def clean_side(ctx: Ctx, orig: Image.Image, names: list[str]) -> dict[str, dict[str, float]]:
    """What each purifier does to the unprotected picture: its cost and R's PSNR after it."""
    x = _t(orig)
    out = {"none": {"cost": float("inf"), "rec": rec_psnr(ctx, orig, x)}}
    for n in names:
        p = PURIFIERS[n](orig, ctx)
        out[n] = {"cost": psnr(_t(p), x), "rec": rec_psnr(ctx, p, x)}
    return out


def protected_side(
    ctx: Ctx, orig: Image.Image, prot: Image.Image, clean: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """Drop before and after each purifier of `clean`, and how close the purified copy is to x."""
    x = _t(orig)
    before = clean["none"]["rec"] - rec_psnr(ctx, prot, x)
    out = {"none": {"drop": before, "kept": 1.0, "purified": psnr(_t(prot), x)}}
    for n in clean:
        if n == "none":
            continue
        p = PURIFIERS[n](prot, ctx)
        drop = clean[n]["rec"] - rec_psnr(ctx, p, x)
        out[n] = {"drop": drop, "kept": drop / before if before > 0 else float("nan")}
        out[n]["purified"] = psnr(_t(p), x)
    return out


# -- reporting --------------------------------------------------------------------------------------
def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, float]]]:
    """method -> purifier -> mean drop, kept (ratio of the mean drops), purified PSNR, cost."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for method, rows in runs.items():
        out[method] = {}
        for n in rows[0]["purify"]:
            drops = [r["purify"][n]["drop"] for r in rows]
            before = float(np.mean([r["purify"]["none"]["drop"] for r in rows]))
            out[method][n] = {
                "drop": float(np.mean(drops)),
                "kept": float(np.mean(drops)) / before if before > 0 else float("nan"),
                "kept_min": float(min(r["purify"][n]["kept"] for r in rows)),
                "purified": float(np.mean([r["purify"][n]["purified"] for r in rows])),
                "cost": float(np.mean([r["clean"][n]["cost"] for r in rows])),
            }
    return out


def table(summary: dict[str, dict[str, dict[str, float]]], methods: list[str]) -> str:
    first = summary[methods[0]]
    head = "| purifier | cost to an unprotected picture |" + "".join(
        f" {m}: drop dB (kept) |" for m in methods
    )
    lines = [head, "|---|---|" + "---|" * len(methods)]
    for n in first:
        cost = "–" if n == "none" else f"{first[n]['cost']:.1f} dB"
        cells = "".join(
            f" {summary[m][n]['drop']:.2f} ({summary[m][n]['kept']:.0%}) |" for m in methods
        )
        label = "none (clean drop)" if n == "none" else n
        lines.append(f"| {label} | {cost} |{cells}")
    return "\n".join(lines)


def plots(
    runs: dict[str, list[dict[str, Any]]],
    summary: dict[str, dict[str, dict[str, float]]],
    out_dir: Path,
    labels: dict[str, str],
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    methods = list(runs)
    colours = dict(zip(methods, ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]))
    written = []

    # 1. drop against visibility: each image, clean and after the chain
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    chain = "chain (noise 4 → x0.5 → JPEG 75)"
    for m in methods:
        vis = [r["psnr"] for r in runs[m]]
        ax.scatter(
            vis,
            [r["purify"]["none"]["drop"] for r in runs[m]],
            color=colours[m],
            marker="o",
            label=f"{labels.get(m, m)}: no purifier",
        )
        if chain in runs[m][0]["purify"]:
            ax.scatter(
                vis,
                [r["purify"][chain]["drop"] for r in runs[m]],
                color=colours[m],
                marker="x",
                label=f"{labels.get(m, m)}: after the chain",
            )
    ax.axvline(32, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(
        "visibility: PSNR of the protected image vs the original (dB, higher = less visible)"
    )
    ax.set_ylabel("reconstruction drop (dB)")
    ax.set_title("Disruption against visibility (taef2, one point per image)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    p = out_dir / "protect_purify_visibility.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)

    # 2. share of the drop kept per purifier
    names = [n for n in summary[methods[0]] if n != "none"]
    fig, ax = plt.subplots(figsize=(7.5, 5.2))
    ys = np.arange(len(names))
    hgt = 0.8 / len(methods)
    for i, m in enumerate(methods):
        vals = [100 * summary[m][n]["kept"] for n in names]
        ax.barh(
            ys + i * hgt - 0.4 + hgt / 2, vals, height=hgt, color=colours[m], label=labels.get(m, m)
        )
    for n, target in TARGETS.items():
        if n in names:
            y = names.index(n)
            ax.plot([100 * target] * 2, [y - 0.45, y + 0.45], color="black", lw=1.5)
    ax.set_yticks(
        ys, [f"{n}  ({summary[methods[0]][n]['cost']:.0f} dB)" for n in names], fontsize=8
    )
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.6)
    ax.set_xlabel("share of the clean reconstruction drop kept after the purifier (%)")
    ax.set_title(
        "Protection left after purification (black ticks: issue targets;\n"
        "in brackets: what the purifier costs an unprotected picture, PSNR)",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    p = out_dir / "protect_purify_kept.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)
    return written


def save_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
