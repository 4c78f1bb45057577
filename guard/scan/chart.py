"""The summary as a picture: images per decision, and how often each signal fired."""

from __future__ import annotations

import io
import os
from pathlib import Path

from guard.scan.report import Summary
from guard.scan.row import DECISIONS

COLOURS = {
    "allowed": "#2e7d32",
    "opted_out": "#1565c0",
    "ai_generated": "#c62828",
    "unverifiable": "#757575",
}


def render(summary: Summary, title: str = "guard scan") -> bytes:
    """PNG bytes of the two bar charts (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from guard.scan.policy import SIGNALS

    signals = summary.signals.most_common()
    height = 2.2 + 0.32 * max(len(signals), 1)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, height), gridspec_kw={"height_ratios": [1.4, max(len(signals), 1)]}
    )
    counts = [summary.decisions.get(d, 0) for d in DECISIONS]
    bars = top.barh(DECISIONS[::-1], counts[::-1], color=[COLOURS[d] for d in DECISIONS[::-1]])
    top.bar_label(
        bars,
        labels=[_label(n, summary.total) for n in counts[::-1]],
        padding=3,
        fontsize=9,
    )
    top.set_title(f"{title}: {summary.total} images", loc="left", fontsize=11)
    top.set_xlim(0, max(max(counts, default=0), 1) * 1.25)
    top.tick_params(labelsize=9)
    if signals:
        codes = [c for c, _ in signals][::-1]
        values = [n for _, n in signals][::-1]
        colours = [
            COLOURS.get(SIGNALS[c].category, "#999") if c in SIGNALS else "#999" for c in codes
        ]
        bars = bottom.barh(codes, values, color=colours, alpha=0.8)
        bottom.bar_label(bars, padding=3, fontsize=8)
        bottom.set_xlim(0, max(values) * 1.2)
        bottom.set_title("signals found (an image can have several)", loc="left", fontsize=10)
    else:
        bottom.text(0.5, 0.5, "no signal found in any image", ha="center", va="center")
        bottom.set_axis_off()
    bottom.tick_params(labelsize=8)
    from matplotlib.ticker import MaxNLocator

    for ax in (top, bottom):
        ax.spines[["top", "right"]].set_visible(False)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def _label(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.0f}%)" if total else str(n)


def write(summary: Summary, path: str | os.PathLike[str], title: str = "guard scan") -> Path:
    from guard.media.atomic_write import save_atomic

    return save_atomic(path, render(summary, title), force=True)
