"""guard scan: throughput, Ray vs local, peak memory, false AI decisions, and the labelled
comparison with datadiligence.

    .venv/bin/python benchmarks/bench_scan.py --compare            # corpus table + chart (docs)
    .venv/bin/python benchmarks/bench_scan.py --throughput         # local engine, 2 workers
    .venv/bin/python benchmarks/bench_scan.py --ray                # Ray vs local, 1 and 2 CPUs
    .venv/bin/python benchmarks/bench_scan.py --memory 1000 5000 20000 50000
    .venv/bin/python benchmarks/bench_scan.py --false-positives    # ../shared/datasets x attacks

Every part runs under a throw-away GUARD_HOME. Images are 512x512 JPEGs (quality 90) made from
the 81 pictures of ../shared/datasets (flipped, shifted and brightened so no two files are
equal). Never run this while another benchmark runs (`ps aux | grep bench_`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DATASETS = ROOT.parent / "shared" / "datasets"
DOCS_IMG = ROOT / "docs" / "img"


def dataset_pictures() -> list[Image.Image]:
    files = sorted(DATASETS.glob("*/*.png"))
    if not files:
        sys.exit(f"no images under {DATASETS}")
    return [Image.open(f).convert("RGB") for f in files]


def make_jpegs(folder: Path, n: int, size: int = 512, per_folder: int = 1000) -> list[Path]:
    """n distinct size² JPEGs in sub-folders of `per_folder` files."""
    pictures = dataset_pictures()
    out = []
    for i in range(n):
        im = pictures[i % len(pictures)]
        variant = i // len(pictures)
        if variant % 2:
            im = ImageOps.mirror(im)
        w, h = im.size
        side = min(w, h)
        x0 = (variant * 7) % max(1, w - side + 1)
        im = im.crop((x0, 0, x0 + side, side)).resize((size, size), Image.Resampling.BICUBIC)
        if variant:
            im = ImageEnhance.Brightness(im).enhance(1 + 0.01 * (variant % 20))
        sub = folder / f"{i // per_folder:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"{i:06d}.jpg"
        im.save(path, quality=90)
        out.append(path)
    return out


def link_copies(unique: list[Path], folder: Path, n: int, per_folder: int = 1000) -> None:
    """n files as hard links to `unique` (distinct paths, shared bytes): cheap big data sets."""
    for i in range(n):
        sub = folder / f"{i // per_folder:05d}"
        sub.mkdir(parents=True, exist_ok=True)
        os.link(unique[i % len(unique)], sub / f"{i:06d}.jpg")


def isolated_home() -> None:
    home = tempfile.mkdtemp(prefix="guard-bench-scan-")
    os.environ["GUARD_HOME"] = home
    os.environ.pop("GUARD_LEDGER", None)


# ---- throughput -------------------------------------------------------------------------------


def timed_scan(paths: list[Path], **options) -> dict:
    """Wall time of a full local scan, and the steady rate after the first 10% of rows."""
    import guard

    start = time.perf_counter()
    stamps = []
    decisions: dict[str, int] = {}
    excluded: dict[str, list[str]] = {}
    for row in guard.scan(paths, **options):
        stamps.append(time.perf_counter())
        decisions[row.decision] = decisions.get(row.decision, 0) + 1
        if row.decision != "allowed":
            excluded[row.path] = row.reasons
    end = time.perf_counter()
    n = len(stamps)
    k = max(1, n // 10)
    steady = (n - k) / (stamps[-1] - stamps[k - 1]) if n > k and stamps[-1] > stamps[k - 1] else 0
    return {
        "images": n,
        "seconds": round(end - start, 2),
        "images_per_s": round(n / (end - start), 1),
        "steady_images_per_s": round(steady, 1),
        "decisions": decisions,
        "excluded": excluded,
    }


def throughput(n_meta: int, n_wm: int, workers: int) -> dict:
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        make_jpegs(Path(tmp), max(n_meta, n_wm))
        files = sorted(Path(tmp).rglob("*.jpg"))
        out["metadata only"] = timed_scan(files[:n_meta], workers=workers, watermark=False)
        out["with watermark"] = timed_scan(files[:n_wm], workers=workers, watermark=True)
    return out


# ---- Ray --------------------------------------------------------------------------------------


def ray_vs_local(sizes: tuple[int, int], watermark: bool) -> list[dict]:
    """Local and Ray at 1 and 2 CPUs. Ray's rate is the marginal one between two data set
    sizes (its fixed start-up, planning and worker imports are reported apart)."""
    import ray

    from guard.scan.api import scan_on_ray

    small, large = sizes
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scan-ray-") as tmp:
        files = make_jpegs(Path(tmp) / "data", large)
        for cpus in (1, 2):
            local = timed_scan(files, workers=cpus, watermark=watermark)
            t0 = time.perf_counter()
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
            init = time.perf_counter() - t0
            seconds = {}
            for n in (small, large):
                t1 = time.perf_counter()
                scan_on_ray(files[:n], Path(tmp) / f"ray{cpus}-{n}.parquet", watermark=watermark)
                seconds[n] = time.perf_counter() - t1
            ray.shutdown()
            marginal = (large - small) / (seconds[large] - seconds[small])
            rows.append(
                {
                    "cpus": cpus,
                    "local_steady_images_per_s": local["steady_images_per_s"],
                    "local_images_per_s": local["images_per_s"],
                    "ray_marginal_images_per_s": round(marginal, 1),
                    "ray_fixed_seconds": round(seconds[small] - small / marginal, 1),
                    "ray_init_seconds": round(init, 1),
                    f"ray_images_per_s_at_{large}": round(large / seconds[large], 1),
                    "ray_over_local_steady": round(marginal / local["steady_images_per_s"], 2),
                }
            )
    return rows


# ---- memory -----------------------------------------------------------------------------------


def _hwm(pid: int | str = "self") -> int:
    """The kernel's peak resident memory of a process (VmHWM), in bytes; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory_run(n: int, unique: Path, workers: int) -> dict:
    """(in a fresh interpreter) scan n hard-linked images into a report.

    Each process's own peak (the kernel's VmHWM, exact: no sampling can miss a short peak such
    as the report's merge at the very end) is summed over the main process, the forkserver and
    the workers. The sum bounds the whole tree's peak from above (it counts shared pages once
    per process, and peaks that never coincide as if they did).
    """
    import psutil

    peaks: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        me = psutil.Process()
        while not done.is_set():
            try:
                children = me.children(recursive=True)
            except psutil.Error:
                children = []
            for child in children:
                peaks[child.pid] = max(peaks.get(child.pid, 0), _hwm(child.pid))
            time.sleep(0.02)

    with tempfile.TemporaryDirectory(prefix="bench-scan-mem-") as tmp:
        link_copies(sorted(unique.rglob("*.jpg")), Path(tmp) / "data", n)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        import guard

        start = time.perf_counter()
        count = 0
        for _ in guard.scan(
            [Path(tmp) / "data"],
            report=Path(tmp) / "report.parquet",
            workers=workers,
            watermark=False,
        ):
            count += 1
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    main, others = _hwm(), sum(peaks.values())
    return {
        "images": count,
        "peak_rss_mib": round((main + others) / 2**20, 1),
        "main_mib": round(main / 2**20, 1),
        "workers_mib": round(others / 2**20, 1),
        "processes": 1 + len(peaks),
        "seconds": round(seconds, 1),
    }


def memory(sizes: list[int], workers: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scan-unique-") as tmp:
        make_jpegs(Path(tmp), 1000)
        for n in sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-run", str(n), tmp, "--workers", str(workers)],
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(results[-1], flush=True)
    return results


# ---- false AI decisions on real photos --------------------------------------------------------


def false_positives(size: int | None, workers: int) -> dict:
    """Scan every dataset picture under every benign transform of the watermark benchmark."""
    from bench_watermark import ATTACKS

    pictures = dataset_pictures()
    with tempfile.TemporaryDirectory(prefix="bench-scan-fp-") as tmp:
        n = 0
        for i, im in enumerate(pictures):
            if size:
                im = im.resize((size, size), Image.Resampling.LANCZOS)
            for name, attack in ATTACKS.items():
                attack(im).convert("RGB").save(Path(tmp) / f"{i:03d}-{name}.png")
                n += 1
        import guard

        start = time.perf_counter()
        decisions: dict[str, int] = {}
        excluded: dict[str, list[str]] = {}
        for row in guard.scan([Path(tmp)], workers=workers, watermark=True):
            decisions[row.decision] = decisions.get(row.decision, 0) + 1
            if row.decision != "allowed":
                excluded[Path(row.path).name] = row.signals
        seconds = time.perf_counter() - start
    return {
        "size": f"{size}²" if size else "native",
        "images": n,
        "transforms": list(ATTACKS),
        "seconds": round(seconds, 1),
        "decisions": decisions,
        "false_ai_generated": decisions.get("ai_generated", 0),
        "excluded": excluded,
    }


# ---- the labelled comparison ------------------------------------------------------------------


def compare(chart: Path | None) -> list[dict]:
    import guard
    from guard.scan import chart as chart_mod
    from guard.scan import report as report_mod
    from tests.scan_corpus import compare, corpus

    with tempfile.TemporaryDirectory(prefix="bench-scan-corpus-") as tmp:
        labels = corpus.build(Path(tmp) / "corpus")
        rows = list(guard.scan([Path(tmp) / "corpus"], workers=2))
        table = compare.side_by_side(labels, rows)
        print("| file | carries | right answer | guard | datadiligence |")
        print("|---|---|---|---|---|")
        for line in table:
            mark = "" if line["guard_correct"] else " ✗"
            theirs = line["datadiligence"] + ("" if line["datadiligence_correct"] else " ✗")
            print(
                f"| `{line['file']}` | {line['carries']} | {line['expected']} | "
                f"{line['guard']}{mark} | {theirs} |"
            )
        good = sum(x["guard_correct"] for x in table)
        theirs = sum(x["datadiligence_correct"] for x in table)
        print(f"\nguard correct: {good}/{len(table)}; datadiligence correct: {theirs}/{len(table)}")
        if chart:
            report = Path(tmp) / "report.parquet"
            list(
                guard.scan(
                    [Path(tmp) / "corpus", *sorted(p for p in DATASETS.iterdir() if p.is_dir())],
                    report=report,
                    workers=2,
                )
            )
            summary = report_mod.summarize(report)
            chart_mod.write(summary, chart, title="corpus + ../shared/datasets")
            print("\n".join(summary.lines()))
            print(f"chart: {chart}")
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--compare", action="store_true", help="corpus: guard vs datadiligence")
    ap.add_argument("--chart", type=Path, default=DOCS_IMG / "scan-summary.png")
    ap.add_argument("--throughput", action="store_true")
    ap.add_argument("--n-meta", type=int, default=1000)
    ap.add_argument("--n-watermark", type=int, default=200)
    ap.add_argument("--ray", action="store_true", help="Ray vs local at 1 and 2 CPUs")
    ap.add_argument("--ray-images", type=int, nargs=2, default=(1500, 4500))
    ap.add_argument("--ray-watermark", action="store_true", help="Ray comparison with detection")
    ap.add_argument("--memory", type=int, nargs="*", help="data set sizes for peak memory")
    ap.add_argument("--memory-run", type=int, help=argparse.SUPPRESS)
    ap.add_argument("unique", nargs="?", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--false-positives", action="store_true")
    ap.add_argument("--fp-size", type=int, default=512, help="0: the pictures' own size")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    isolated_home()
    results: dict = {}
    if args.memory_run:
        print(json.dumps(memory_run(args.memory_run, args.unique, args.workers)))
        return 0
    if args.compare:
        results["compare"] = compare(args.chart)
    if args.throughput:
        results["throughput"] = throughput(args.n_meta, args.n_watermark, args.workers)
        print(json.dumps(results["throughput"], indent=1))
    if args.ray:
        results["ray"] = ray_vs_local(tuple(args.ray_images), args.ray_watermark)
        print(json.dumps(results["ray"], indent=1))
    if args.memory:
        results["memory"] = memory(args.memory, args.workers)
    if args.false_positives:
        results["false_positives"] = false_positives(args.fp_size or None, args.workers)
        fp = results["false_positives"]
        print(json.dumps({k: v for k, v in fp.items() if k != "transforms"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
