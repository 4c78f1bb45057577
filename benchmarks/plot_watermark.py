"""Draw the watermark robustness chart for docs from a saved bench_watermark.py --json file.

.venv/bin/python benchmarks/bench_watermark.py --riva-limit 3 --jobs 2 --json wm.json
.venv/bin/python benchmarks/plot_watermark.py wm.json docs/img/watermark_robustness.png [more.json ...]

Methods missing from the first file are taken from the others (a guard-only rerun plotted beside
the baselines of an earlier full run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def merged_summary(files: list[str]) -> dict:
    """The first file's summary, plus every method only a later file has."""
    summary = json.loads(Path(files[0]).read_text())["summary"]
    for extra in files[1:]:
        for size, methods in json.loads(Path(extra).read_text())["summary"].items():
            for name, m in methods.items():
                summary.setdefault(size, {}).setdefault(name, m)
    return summary


def main(src: str, out: str, *extra: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = merged_summary([src, *extra])
    sizes = list(summary)
    fig, axes = plt.subplots(len(sizes), 1, figsize=(11, 3.2 * len(sizes)), sharex=True)
    for ax, size in zip(axes if len(sizes) > 1 else [axes], sizes, strict=True):
        methods = summary[size]
        attacks = list(next(iter(methods.values()))["exact"])
        width = 0.8 / len(methods)
        for k, (name, m) in enumerate(methods.items()):
            xs = [i + (k - (len(methods) - 1) / 2) * width for i in range(len(attacks))]
            label = f"{name} ({m['images']} images)"
            ax.bar(xs, [m["exact"][a] for a in attacks], width, label=label)
        ax.axhline(0.9, color="grey", lw=0.8, ls="--")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("exact ID recovered")
        ax.set_title(f"{size}: share of images whose exact payload survives each attack")
    ax.set_xticks(range(len(attacks)), attacks, rotation=35, ha="right", fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
