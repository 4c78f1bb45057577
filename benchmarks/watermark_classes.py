"""How visible guard's mark is on each kind of picture (issue 21, section 4): measurement only.

    .venv/bin/python benchmarks/watermark_classes.py --collect /tmp/wm-classes \\
        --debs /tmp/debs/x --mirrors /work/.mirror             # gather the pictures (once)
    .venv/bin/python benchmarks/watermark_classes.py --pictures /tmp/wm-classes \\
        --json wm-classes.json --crops docs/img                # the table and the crops

Five classes of 12 public pictures each, never committed (`SOURCES` names each file, where it
comes from and its licence): line art (openclipart, public domain), flat graphics (openclipart),
screenshots (the GIMP manual's, GFDL), photos (scikit-image's samples, Set14 from
../shared/datasets, matplotlib's sample) and paintings (public-domain works as shipped by
neural-style-transfer repositories). `--collect` needs the Debian packages openclipart-svg and
gimp-help-en unpacked under --debs (`apt-get download openclipart-svg gimp-help-en`, then
`dpkg-deb -x FILE.deb DIR` for each), the GitHub repositories in `MIRRORS` as git folders under
--mirrors (OWNER+NAME/), and rsvg-convert (Debian's librsvg2-bin) for the SVGs.

Each picture is made a 512² centre crop (one whose short side is under 512 px is first scaled up
to 512, and says so), marked by guard at its default strength with a random ID, and compared
with the unmarked crop: PSNR and SSIM over RGB (as benchmarks/bench_watermark.py does) and
PSNR-HVS-M on luma (Ponomarenko et al., "On between-coefficient contrast masking of DCT basis
functions", 2007), a perceptual measure: the error of each 8x8 DCT coefficient is weighted by
the eye's contrast sensitivity at its frequency and reduced by what the block's own texture
masks. LPIPS is not in the lock and its networks' weights cannot be downloaded here, so this is
the stand-in: it is made for small distortions near the threshold of seeing them, which is
what a watermark is, and it tells a mark hidden in texture from the same mark on a flat area.
Every marked crop is also read back (found or not). Then two synthetic cases: flat colour
fields, and black line art on white, with crops of the picture, the marked picture and the
difference (amplified) written to --crops.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIDE = 512
SHARED = ROOT.parent / "shared" / "datasets"
GIMP_IMAGES = "usr/share/gimp/2.0/help/en/images"
CLIPART = "usr/share/openclipart/svg"

# the GitHub repositories the paintings come from (code licences; the paintings themselves are
# public domain by age: their painters died more than 70 years ago, or the work predates 1929)
MIRRORS = {
    "jcjohnson/neural-style": "MIT",
    "lengstrom/fast-style-transfer": "code: free for research use",
    "titu1994/Neural-Style-Transfer": "Apache-2.0",
    "cysmith/neural-style-tf": "GPL-3.0",
    "xunhuang1995/AdaIN-style": "MIT",
}

OPENCLIPART = "openclipart-svg (Debian), public domain dedication"
GIMP = "gimp-help-en (Debian), GFDL / GPL"
SKIMAGE = "scikit-image sample data (see skimage/data/README.txt)"
SET14 = "Set14 (../shared/datasets/cset14), research benchmark"


def _files(kind: str, licence: str, *paths: str) -> list[tuple[str, str, str]]:
    """(name, "KIND:PATH", licence) for files that share a source and a licence."""
    return [(Path(p).stem, f"{kind}:{p}", licence) for p in paths]


# class -> [(name, where, licence)]; where: "clipart:PATH", "gimp:PATH", "skimage:FILE",
# "shared:PATH", "mpl:FILE", "git:OWNER/NAME:PATH"
SOURCES: dict[str, list[tuple[str, str, str]]] = {
    "line art": _files(
        "clipart",
        OPENCLIPART,
            "food/meats_and_eggs/hamburger_bw.svg",
            "transportation/grain_elevator_ganson.svg",
            "decorations/right_bottom_corner_tri_.svg",
            "education/newspaper_nicu_buculei_01.svg",
            "plants/flowers/flower2_juliane_krug_01.svg",
            "transportation/hummer_01.svg",
            "special/patterns/pattern-circles-1.svg",
            "food/breads_and_carbs/pancakes_bw.svg",
            "signs_and_symbols/weather/snowstorm.svg",
            "unsorted/fattoria.svg",
            "office/paper4.svg",
            "recreation/sports/sport_stacco02.svg",
    ),
    "flat graphics": _files(
        "clipart",
        OPENCLIPART,
            "office/telephone/telephone_sauvetage_yves_01.svg",
            "special/patterns/pattern-diamond-harlequin-2.svg",
            "computer/icons/lemon-theme/apps/cervisia.svg",
            "signs_and_symbols/flags/miscellany/unicef.svg",
            "unsorted/marchio_gallina_architet_01.svg",
            "signs_and_symbols/flags/asia/maledives.svg",
            "computer/icons/flat-theme/folder_violet_open.svg",
            "signs_and_symbols/flags/europe/iceland.svg",
            "signs_and_symbols/risque_pour_l_environne_01.svg",
            "computer/icons/camera_icon_stuart_moore_01.svg",
            "office/box_with_folders_nicu_bu_01.svg",
            "animals/fish/pescetto_arancione_archi_01.svg",
    ),
    "screenshots": _files(
        "gimp",
        GIMP,
            "dialogs/keyboard-shortcuts-dialog.png",
            "filters/generic/convolution.png",
            "menus/image/metadata-editor-dialog.png",
            "menus/layer/new.png",
            "preferences/prefs-color-management.png",
            "preferences/prefs-interface.png",
            "preferences/prefs-toolbox.png",
            "using/export-jpeg-dialog.png",
            "using/file-open-dialog.png",
            "using/image-window-single.png",
            "using/multi-window.png",
            "menus/file/save-as.png",
    ),
    "photos": [
        *_files(
            "skimage",
            SKIMAGE,
                "astronaut.png",
                "camera.png",
                "hubble_deep_field.jpg",
                "retina.jpg",
                "ihc.png",
                "motorcycle_left.png",
        ),
        *_files("shared", SET14, *(f"cset14/{f}.png" for f in ("barbara", "monarch", "pepper", "man", "bridge"))),
        ("grace_hopper", "mpl:grace_hopper.jpg", "matplotlib sample data (US Navy, public domain)"),
    ],
    "paintings": [
        ("van_gogh_starry_night", "git:jcjohnson/neural-style:examples/inputs/starry_night_google.jpg", "public domain"),
        ("turner_shipwreck", "git:lengstrom/fast-style-transfer:examples/style/the_shipwreck_of_the_minotaur.jpg", "public domain"),
        ("munch_scream", "git:jcjohnson/neural-style:examples/inputs/the_scream.jpg", "public domain"),
        ("matisse_woman_with_hat", "git:jcjohnson/neural-style:examples/inputs/woman-with-hat-matisse.jpg", "public domain (1905)"),
        ("monet_water_lilies", "git:titu1994/Neural-Style-Transfer:images/inputs/style/water-lilies-1919-2.jpg", "public domain"),
        ("kandinsky_composition_vii", "git:cysmith/neural-style-tf:styles/kandinsky.jpg", "public domain"),
        ("picabia_udnie", "git:lengstrom/fast-style-transfer:examples/style/udnie.jpg", "public domain (1913)"),
        ("leger_contrast_of_forms", "git:xunhuang1995/AdaIN-style:input/style/contrast_of_forms.jpg", "public domain (1913)"),
        ("mondrian_composition", "git:xunhuang1995/AdaIN-style:input/style/mondrian.jpg", "public domain (1913)"),
        ("hokusai_great_wave", "git:lengstrom/fast-style-transfer:examples/style/wave.jpg", "public domain"),
        ("watteau_woman_in_peasant_dress", "git:xunhuang1995/AdaIN-style:input/style/woman_in_peasant_dress.jpg", "public domain (red chalk drawing)"),
        ("reservoir_at_poitiers", "git:xunhuang1995/AdaIN-style:input/style/the_resevoir_at_poitiers.jpg", "public domain"),
    ],
}  # fmt: skip


# ---- gathering ----------------------------------------------------------------------------------
def _skimage_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def _mpl_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data"


def _git_show(mirrors: Path, repo: str, path: str) -> bytes:
    base = mirrors / repo.replace("/", "+")
    for where in (base / "repo", base / "repo" / ".git", base):
        done = subprocess.run(
            ["git", "--git-dir", str(where), "show", f"HEAD:{path}"], capture_output=True
        )
        if done.returncode == 0:
            return done.stdout
    raise SystemExit(f"{repo}:{path} not found under {base} (fetch the repository first)")


def _render_svg(path: Path) -> Image.Image:
    """On white, its short side SIDE px (vector art drawn at the size it is measured at)."""

    def render(side: str) -> Image.Image:
        png = subprocess.run(
            ["rsvg-convert", side, str(SIDE), "-a", "-b", "white", str(path)],
            capture_output=True,
            check=True,
        ).stdout
        return Image.open(io.BytesIO(png))

    im = render("-w")
    return im if im.size[1] >= SIDE else render("-h")


def load_source(where: str, *, debs: Path | None, mirrors: Path | None) -> Image.Image:
    kind, _, rest = where.partition(":")
    if kind == "clipart":
        assert debs is not None, "--debs is needed for openclipart"
        return _render_svg(debs / CLIPART / rest)
    if kind == "gimp":
        assert debs is not None, "--debs is needed for the GIMP manual"
        return Image.open(debs / GIMP_IMAGES / rest)
    if kind == "skimage":
        return Image.open(_skimage_dir() / rest)
    if kind == "shared":
        return Image.open(SHARED / rest)
    if kind == "mpl":
        return Image.open(_mpl_dir() / rest)
    if kind == "git":
        assert mirrors is not None, "--mirrors is needed for the paintings"
        repo, _, path = rest.partition(":")
        return Image.open(io.BytesIO(_git_show(mirrors, repo, path)))
    raise ValueError(where)


def centre_crop(im: Image.Image) -> tuple[Image.Image, bool]:
    """(the SIDE² centre crop as RGB, whether the picture had to be scaled up first)."""
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        flat = Image.new("RGBA", im.size, "white")
        flat.alpha_composite(im)
        im = flat
    im = im.convert("RGB")
    w, h = im.size
    upscaled = min(w, h) < SIDE
    if upscaled:
        f = SIDE / min(w, h)
        im = im.resize((max(SIDE, round(w * f)), max(SIDE, round(h * f))), Image.Resampling.LANCZOS)
        w, h = im.size
    x, y = (w - SIDE) // 2, (h - SIDE) // 2
    return im.crop((x, y, x + SIDE, y + SIDE)), upscaled


def collect(out: Path, debs: Path | None, mirrors: Path | None) -> None:
    manifest = []
    for cls, entries in SOURCES.items():
        folder = out / cls.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for name, where, licence in entries:
            crop, upscaled = centre_crop(load_source(where, debs=debs, mirrors=mirrors))
            crop.save(folder / f"{name}.png")
            manifest.append(
                {
                    "class": cls,
                    "name": name,
                    "source": where,
                    "licence": licence,
                    "upscaled": upscaled,
                }
            )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"{len(manifest)} pictures in {out}")


# ---- measures -----------------------------------------------------------------------------------
# Contrast sensitivity of each 8x8 DCT frequency (Ponomarenko et al. 2007, as in their
# psnrhvsm.m); the masking weights are its squares over the largest square.
CSF = np.array(
    [
        [1.608443, 2.339554, 2.573509, 1.608443, 1.072295, 0.643377, 0.504610, 0.421887],
        [2.144591, 2.144591, 1.838221, 1.354478, 0.989811, 0.443708, 0.428918, 0.467911],
        [1.838221, 1.979622, 1.608443, 1.072295, 0.643377, 0.451493, 0.372972, 0.459555],
        [1.838221, 1.513829, 1.169777, 0.887417, 0.504610, 0.295806, 0.321689, 0.415082],
        [1.429727, 1.169777, 0.695543, 0.459555, 0.378457, 0.236102, 0.249855, 0.334222],
        [1.072295, 0.735288, 0.467911, 0.402111, 0.317717, 0.247453, 0.227744, 0.279729],
        [0.525206, 0.402111, 0.329937, 0.295806, 0.249855, 0.212687, 0.214459, 0.254803],
        [0.357432, 0.279729, 0.270896, 0.262603, 0.229778, 0.257351, 0.249855, 0.259950],
    ]
)
MASK = CSF**2 / (CSF**2).max()


def _luma(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]


def _blocks(y: np.ndarray) -> np.ndarray:
    h, w = (s - s % 8 for s in y.shape)
    return y[:h, :w].reshape(h // 8, 8, w // 8, 8).swapaxes(1, 2).reshape(-1, 8, 8)


def _masking(blocks: np.ndarray, dct: np.ndarray) -> np.ndarray:
    """Each block's masking strength: its AC energy weighted by MASK, scaled by how evenly the
    variance spreads over its four quarters (edges mask less than texture)."""
    weights = MASK.copy()
    weights[0, 0] = 0
    energy = np.sum(dct**2 * weights, axis=(1, 2))

    def var(z: np.ndarray) -> np.ndarray:  # MATLAB's var(z(:)) * numel
        flat = z.reshape(len(z), -1)
        return flat.var(axis=1, ddof=1) * flat.shape[1]

    whole = var(blocks)
    quarters = sum(var(blocks[:, i : i + 4, j : j + 4]) for i in (0, 4) for j in (0, 4))
    spread = np.divide(quarters, whole, out=np.zeros_like(whole), where=whole != 0)
    return np.sqrt(energy * spread) / 32


def psnr_hvs_m(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR-HVS-M of two RGB uint8 pictures, on their luma (dB; 100 when no difference is
    seen)."""
    from scipy.fft import dctn

    ba, bb = _blocks(_luma(a)), _blocks(_luma(b))
    da, db = dctn(ba, axes=(1, 2), norm="ortho"), dctn(bb, axes=(1, 2), norm="ortho")
    mask = np.maximum(_masking(ba, da), _masking(bb, db))[:, None, None]
    u = np.abs(da - db)
    masked = np.maximum(u - mask / MASK, 0)
    masked[:, 0, 0] = u[:, 0, 0]  # the block's mean is never masked
    s = float(np.mean((masked * CSF) ** 2))
    return 100.0 if s == 0 else float(10 * np.log10(255.0**2 / s))


def measure(original: Image.Image, payload: bytes) -> tuple[dict, Image.Image]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from guard import watermark

    marked = watermark.embed(original, payload).convert("RGB")
    a, m = np.asarray(original), np.asarray(marked)
    diff = m.astype(np.int16) - a.astype(np.int16)
    hit = watermark.detect(marked)
    return {
        "psnr": float(peak_signal_noise_ratio(a, m, data_range=255)),
        "ssim": float(structural_similarity(a, m, channel_axis=2, data_range=255)),
        "psnr_hvs_m": psnr_hvs_m(a, m),
        "max_abs_diff": int(np.abs(diff).max()),
        "changed": float(np.mean(np.any(diff != 0, axis=2))),
        "found": bool(hit.found and hit.payload == payload),
    }, marked


# ---- synthetic cases --------------------------------------------------------------------------
def flat_fields() -> dict[str, Image.Image]:
    colours = {"mid grey": (128, 128, 128), "sky blue": (150, 190, 235), "near black": (24, 24, 24)}
    return {name: Image.new("RGB", (SIDE, SIDE), rgb) for name, rgb in colours.items()}


def line_art() -> Image.Image:
    """Black strokes of 1 to 4 px on white: straight, curved and hatched, like an inked page."""
    im = Image.new("RGB", (SIDE, SIDE), "white")
    d = ImageDraw.Draw(im)
    rng = np.random.default_rng(7)
    for width in (1, 2, 3, 4):
        for _ in range(5):
            x0, y0, x1, y1 = (int(v) for v in rng.integers(0, SIDE, 4))
            d.line((x0, y0, x1, y1), fill="black", width=width)
            cx, cy, r = (int(v) for v in (*rng.integers(60, SIDE - 60, 2), rng.integers(15, 70)))
            d.ellipse((cx - r, cy - r, cx + r, cy + r), outline="black", width=width)
    for x in range(300, 460, 6):  # hatching
        d.line((x, 330, x + 40, 470), fill="black", width=1)
    return im


def strip(
    original: Image.Image, marked: Image.Image, box: tuple[int, int, int, int], gain: int
) -> Image.Image:
    """original | marked | difference x gain around mid grey, each crop scaled x3 (nearest)."""
    a = np.asarray(original.crop(box)).astype(np.int16)
    m = np.asarray(marked.crop(box)).astype(np.int16)
    d = np.clip(128 + gain * (m - a), 0, 255).astype(np.uint8)
    tiles = [Image.fromarray(x.astype(np.uint8)) for x in (a, m)] + [Image.fromarray(d)]
    w, h = tiles[0].size
    out = Image.new("RGB", (3 * 3 * w + 2 * 6, 3 * h), "white")
    for i, t in enumerate(tiles):
        out.paste(t.resize((3 * w, 3 * h), Image.Resampling.NEAREST), (i * (3 * w + 6), 0))
    return out


def synthetic(crops: Path | None) -> dict:
    out: dict = {}
    payload = bytes(range(1, 9))
    strips = []
    for name, im in flat_fields().items():
        res, marked = measure(im, payload)
        out[f"flat {name}"] = res
        strips.append(strip(im, marked, (192, 192, 288, 288), 16))
    art = line_art()
    res, marked = measure(art, payload)
    out["black line art on white"] = res
    a = np.asarray(art).astype(np.int16)
    d = np.abs(np.asarray(marked).astype(np.int16) - a).max(axis=2)
    ink = a.max(axis=2) < 128
    from scipy.ndimage import binary_dilation

    near = binary_dilation(ink, iterations=3) & ~ink
    paper = ~binary_dilation(ink, iterations=8)
    out["black line art on white"].update(
        mean_abs_diff_on_ink=float(d[ink].mean()),
        mean_abs_diff_beside_lines=float(d[near].mean()),
        mean_abs_diff_on_blank_paper=float(d[paper].mean()),
    )
    if crops is not None:
        crops.mkdir(parents=True, exist_ok=True)
        sheet = Image.new("RGB", (strips[0].width, sum(s.height + 6 for s in strips)), "white")
        y = 0
        for s in strips:
            sheet.paste(s, (0, y))
            y += s.height + 6
        sheet.save(crops / "watermark_flat_field.png", optimize=True)
        strip(art, marked, (300, 330, 396, 426), 16).save(
            crops / "watermark_line_art.png", optimize=True
        )
    return out


# ---- the run ------------------------------------------------------------------------------------
def run(pictures: Path, crops: Path | None) -> dict:
    manifest = {
        (e["class"], e["name"]): e for e in json.loads((pictures / "manifest.json").read_text())
    }
    rng = np.random.default_rng(21)
    per_class: dict[str, list[dict]] = {}
    if crops is not None:
        crops.mkdir(parents=True, exist_ok=True)
    for (cls, name), entry in manifest.items():
        im = Image.open(pictures / cls.replace(" ", "_") / f"{name}.png").convert("RGB")
        payload = bytes(rng.integers(0, 256, 8, dtype=np.uint8))
        res, marked = measure(im, payload)
        res.update(name=name, upscaled=entry["upscaled"])
        per_class.setdefault(cls, []).append(res)
        print(f"{cls:14s} {name:36s} PSNR {res['psnr']:.2f} SSIM {res['ssim']:.4f} "
              f"HVS-M {res['psnr_hvs_m']:.2f} found {res['found']}", flush=True)  # fmt: skip
        if crops is not None and cls == "line art" and name == "hamburger_bw":
            strip(im, marked, (208, 208, 304, 304), 16).save(
                crops / "watermark_line_art_clipart.png", optimize=True
            )
    summary = {}
    for cls, rows in per_class.items():
        summary[cls] = {
            "n": len(rows),
            "psnr_mean": statistics.fmean(r["psnr"] for r in rows),
            "psnr_min": min(r["psnr"] for r in rows),
            "psnr_min_name": min(rows, key=lambda r: r["psnr"])["name"],
            "ssim_mean": statistics.fmean(r["ssim"] for r in rows),
            "ssim_min": min(r["ssim"] for r in rows),
            "psnr_hvs_m_mean": statistics.fmean(r["psnr_hvs_m"] for r in rows),
            "psnr_hvs_m_min": min(r["psnr_hvs_m"] for r in rows),
            "found": sum(r["found"] for r in rows),
            "upscaled": sum(r["upscaled"] for r in rows),
        }
    return {"classes": summary, "pictures": per_class, "synthetic": synthetic(crops)}


def budget_check(pictures: Path, result: dict, budget: float) -> dict:
    """What a per-picture PSNR budget would cost: every picture the default strength leaves
    under `budget` dB is marked again at the strength that meets it (the mark's own
    `strength` argument, nothing else changed), and both marks are attacked with
    benchmarks/bench_watermark.py's suite. Detection rates over those pictures."""
    from bench_watermark import ATTACKS

    from guard import watermark

    rng = np.random.default_rng(43)
    rates: dict[str, dict[str, int]] = {a: {"default": 0, "budget": 0} for a in ATTACKS}
    chosen = []
    for cls, rows in result["pictures"].items():
        for r in rows:
            if r["psnr"] >= budget:
                continue
            im = Image.open(pictures / cls.replace(" ", "_") / f"{r['name']}.png").convert("RGB")
            strength = 0.995 * 10 ** ((r["psnr"] - budget) / 20)
            payload = bytes(rng.integers(0, 256, 8, dtype=np.uint8))
            marks = {
                "default": watermark.embed(im, payload),
                "budget": watermark.embed(im, payload, strength=strength),
            }
            a = np.asarray(im)
            after = float(
                10
                * np.log10(255**2 / np.mean((np.asarray(marks["budget"]).astype(float) - a) ** 2))
            )
            chosen.append({"class": cls, "name": r["name"], "strength": strength, "psnr": after})
            for attack, fn in ATTACKS.items():
                for which, marked in marks.items():
                    hit = watermark.detect(fn(marked))
                    rates[attack][which] += bool(hit.found and hit.payload == payload)
            print(f"budget {cls:14s} {r['name']:32s} strength {strength:.2f} -> {after:.2f} dB", flush=True)  # fmt: skip
    return {"budget_db": budget, "pictures": chosen, "detected": rates}


def table(result: dict) -> str:
    lines = [
        "| class | n | mean PSNR | min PSNR (picture) | mean SSIM | min SSIM | mean PSNR-HVS-M | min PSNR-HVS-M | read back |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for cls, s in result["classes"].items():
        lines.append(
            f"| {cls} | {s['n']} | {s['psnr_mean']:.1f} dB | {s['psnr_min']:.1f} dB "
            f"({s['psnr_min_name']}) | {s['ssim_mean']:.4f} | {s['ssim_min']:.4f} | "
            f"{s['psnr_hvs_m_mean']:.1f} dB | {s['psnr_hvs_m_min']:.1f} dB | "
            f"{s['found']}/{s['n']} |"
        )
    lines += ["", "| synthetic | PSNR | SSIM | PSNR-HVS-M | max abs diff | pixels changed |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in result["synthetic"].items():
        lines.append(
            f"| {name} | {r['psnr']:.1f} dB | {r['ssim']:.4f} | {r['psnr_hvs_m']:.1f} dB | "
            f"{r['max_abs_diff']} | {r['changed']:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--collect", type=Path, help="gather the pictures into this folder")
    ap.add_argument("--debs", type=Path, help="unpacked openclipart-svg and gimp-help-en")
    ap.add_argument("--mirrors", type=Path, help="git folders of the MIRRORS repositories")
    ap.add_argument("--pictures", type=Path, help="measure the pictures gathered here")
    ap.add_argument("--crops", type=Path, help="write the synthetic cases' crops here (PNG)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument(
        "--budget",
        type=float,
        help="also mark every picture under this PSNR again at the strength that meets it, and "
        "attack both marks (bench_watermark.py's suite)",
    )
    args = ap.parse_args(argv)
    if args.collect:
        collect(args.collect, args.debs, args.mirrors)
    if args.pictures:
        result = run(args.pictures, args.crops)
        print(table(result))
        if args.budget:
            sys.path.insert(0, str(ROOT / "benchmarks"))
            result["budget"] = budget_check(args.pictures, result, args.budget)
            n = len(result["budget"]["pictures"])
            print(
                f"\n| attack | default strength (n={n}) | {args.budget:g} dB budget |\n|---|---|---|"
            )
            for attack, r in result["budget"]["detected"].items():
                print(f"| {attack} | {r['default'] / n:.2f} | {r['budget'] / n:.2f} |")
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
