"""`guard verify` on a folder, and `guard scan --no-watermark` on 1,000 files, beside exiftool.

    .venv/bin/python benchmarks/bench_verify_folder.py                 # both parts, 5 rounds
    .venv/bin/python benchmarks/bench_verify_folder.py --only verify --rounds 3
    .venv/bin/python benchmarks/bench_verify_folder.py --only scan --scan-images 1000

verify: 50 mixed 512² JPEGs (quality 90) made from the pictures of ../shared/datasets: a third
signed by guard (C2PA + watermark + ledger record), a third watermarked only, a third plain.
Each command runs as a user runs it, in a fresh process, start-up included, output to
/dev/null: `guard verify DIR --json` (the watermark check), the same with `--no-watermark`, and
with `--workers 0` (one file after another in one process, as before), against `exiftool -j -q
-r DIR` on the same folder. scan: `guard scan --no-watermark --fresh --report R DIR` on 1,000
distinct 512² JPEGs against exiftool on the same folder.

Rounds alternate the tools (guard, exiftool, guard, ...), so both see the same load on a shared
machine; the table gives the median round and the range. Everything runs under a throw-away
GUARD_HOME. exiftool: Debian's libimage-exiftool-perl (`apt-get install libimage-exiftool-perl`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

GUARD = [sys.executable, "-m", "guard"]


def mixed_folder(folder: Path, n: int = 50, size: int = 512) -> dict[str, int]:
    """n 512² JPEGs: signed (C2PA + mark + ledger record), marked only, plain, in turn."""
    from bench_scan import make_jpegs
    from PIL import Image

    import guard
    from guard.watermark import embed

    staging = folder.parent / (folder.name + ".src")
    sources = make_jpegs(staging, n, size)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = {"signed": 0, "marked": 0, "plain": 0}
    for i, src in enumerate(sources):
        out = folder / f"{i:03d}.jpg"
        kind = ("signed", "marked", "plain")[i % 3]
        if kind == "signed":
            guard.sign(src, out, author="bench", training="notAllowed")
        elif kind == "marked":
            with Image.open(src) as im:
                embed(im.convert("RGB"), os.urandom(8)).save(out, quality=90)
        else:
            shutil.copyfile(src, out)
        kinds[kind] += 1
    shutil.rmtree(staging)
    return kinds


def exiftool() -> str:
    path = shutil.which("exiftool")
    if path is None:
        sys.exit("exiftool is missing: apt-get install libimage-exiftool-perl")
    return path


def wall(cmd: list[str]) -> tuple[float, float]:
    """(seconds, CPU seconds of the whole process tree) for one run of `cmd`, output
    discarded. CPU is sampled every 10 ms per process (psutil), so a process shorter than
    that is missed: a floor, not an exact sum. A failure to run is fatal, its exit code is not
    (verify exits 1 on unsigned files)."""
    import psutil

    cpu: dict[int, float] = {}
    # the warm-up run writes guard's .pyc files, as an installed package has them: a shell
    # that sets PYTHONDONTWRITEBYTECODE (this machine's does) would otherwise compile guard's
    # sources in every run, about 0.1 s that no user's install pays
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        time.sleep(0.01)
    seconds = time.perf_counter() - start
    err = proc.stderr.read() if proc.stderr else b""
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}\n{err.decode()[-2000:]}")
    return seconds, sum(cpu.values())


def rounds(commands: dict[str, list[str]], n: int, images: int) -> dict[str, dict]:
    """Each command once per round, in turn; the median round, the best one (the least
    disturbed by the machine's other work) and the range, as images/s."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for cmd in commands.values():  # one warm-up each (page cache, .pyc files)
        wall(cmd)
    for _ in range(n):
        for name, cmd in commands.items():
            seconds, cpu = wall(cmd)
            times[name].append(seconds)
            cpus[name].append(cpu)
    out = {}
    for name, secs in times.items():
        med = statistics.median(secs)
        out[name] = {
            "images": images,
            "seconds_median": round(med, 3),
            "images_per_s_median": round(images / med, 1),
            "images_per_s_best": round(images / min(secs), 1),
            "images_per_s_range": [round(images / max(secs), 1), round(images / min(secs), 1)],
            "cpu_seconds_median": round(statistics.median(cpus[name]), 2),
            "command": " ".join(commands[name]),
        }
    return out


def steady_run(folder: Path, watermark: bool, workers: int) -> dict:
    """(in a fresh interpreter) guard.verify_many over `folder`, its imports and first file
    done before the clock starts: the rate once started. With workers, the rate between the
    first answer and the last (the pool's own start-up is reported apart)."""
    from guard.scan.batch import verify_many

    files = sorted(folder.glob("*.jpg"))
    list(verify_many(files[:1], watermark=watermark, workers=0))
    start = time.perf_counter()
    stamps = [time.perf_counter() for _ in verify_many(files, watermark=watermark, workers=workers)]
    n = len(stamps)
    return {
        "images": n,
        "seconds": round(stamps[-1] - start, 3),
        "images_per_s": round(n / (stamps[-1] - start), 1),
        "first_answer_s": round(stamps[0] - start, 3),
        "images_per_s_after_first": round((n - 1) / (stamps[-1] - stamps[0]), 1),
    }


def steady(folder: Path, reps: int) -> dict[str, dict]:
    """The library's rate, start-up excluded, for each setting; the median of `reps` runs."""
    settings = {
        f"verify_many, watermark {'on' if wm else 'off'}, workers={w}": (wm, w)
        for wm in (True, False)
        for w in (0, 2)
    }
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    for _ in range(reps):
        for name, (wm, w) in settings.items():
            cmd = [sys.executable, __file__, "--steady-run", str(folder), str(int(wm)), str(w)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    out = {}
    for name, rs in runs.items():
        best = max(rs, key=lambda r: r["images_per_s"])
        out[name] = {
            "images_per_s_median": statistics.median(r["images_per_s"] for r in rs),
            "images_per_s_best": best["images_per_s"],
            "after_first_median": statistics.median(r["images_per_s_after_first"] for r in rs),
            "first_answer_s_median": statistics.median(r["first_answer_s"] for r in rs),
        }
    return out


def verify_part(tmp: Path, n: int, reps: int) -> dict:
    folder = tmp / "verify50"
    kinds = mixed_folder(folder, n)
    tool = exiftool()
    commands = {
        "guard verify --json (watermark check)": [*GUARD, "verify", str(folder), "--json"],
        "guard verify --no-watermark --json": [
            *GUARD,
            "verify",
            str(folder),
            "--no-watermark",
            "--json",
        ],
        "guard verify --workers 0 --json (one by one)": [
            *GUARD,
            "verify",
            str(folder),
            "--workers",
            "0",
            "--json",
        ],
        "exiftool -j -q -r": [tool, "-j", "-q", "-r", str(folder)],
    }
    results = rounds(commands, reps, n)
    return {"files": kinds, "rounds": reps, "results": results, "steady": steady(folder, reps)}


def scan_part(tmp: Path, n: int, reps: int) -> dict:
    from bench_scan import make_jpegs

    folder = tmp / f"scan{n}"
    make_jpegs(folder, n)
    report = tmp / "scan-report.parquet"
    commands = {
        "guard scan --no-watermark": [
            *GUARD,
            "scan",
            str(folder),
            "--no-watermark",
            "--fresh",
            "--report",
            str(report),
        ],
        "exiftool -j -q -r": [exiftool(), "-j", "-q", "-r", str(folder)],
    }
    results = rounds(commands, reps, n)
    ratio = (
        results["guard scan --no-watermark"]["images_per_s_median"]
        / results["exiftool -j -q -r"]["images_per_s_median"]
    )
    return {"rounds": reps, "results": results, "guard_over_exiftool": round(ratio, 2)}


def table(part: dict) -> str:
    lines = [
        "| command | images | images/s, median (range) | best | seconds, median | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in part["results"].items():
        lo, hi = r["images_per_s_range"]
        lines.append(
            f"| `{name}` | {r['images']} | {r['images_per_s_median']} ({lo}–{hi}) | "
            f"{r['images_per_s_best']} | {r['seconds_median']} | {r['cpu_seconds_median']} |"
        )
    return "\n".join(lines)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", choices=["verify", "scan"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--verify-images", type=int, default=50)
    ap.add_argument("--scan-images", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--steady-run", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.steady_run:
        folder, wm, workers = args.steady_run
        print(json.dumps(steady_run(Path(folder), wm == "1", int(workers))))
        return 0

    home = tempfile.mkdtemp(prefix="guard-bench-verify-")
    os.environ["GUARD_HOME"] = home
    os.environ.pop("GUARD_LEDGER", None)
    out: dict = {"before": load()}
    with tempfile.TemporaryDirectory(prefix="bench-verify-folder-") as tmp:
        if args.only in (None, "verify"):
            out["verify"] = verify_part(Path(tmp), args.verify_images, args.rounds)
            print(f"verify, {out['verify']['files']}:\n{table(out['verify'])}\n", flush=True)
            for name, r in out["verify"]["steady"].items():
                print(f"{name}: {r}", flush=True)
        if args.only in (None, "scan"):
            out["scan"] = scan_part(Path(tmp), args.scan_images, args.rounds)
            print(
                f"scan, {args.scan_images} files (guard / exiftool "
                f"{out['scan']['guard_over_exiftool']}):\n{table(out['scan'])}\n",
                flush=True,
            )
    out["after"] = load()
    print(f"before: {out['before']}; after: {out['after']}")
    shutil.rmtree(home, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
