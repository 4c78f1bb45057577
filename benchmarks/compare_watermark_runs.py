"""Do two runs of bench_watermark.py (`--json`) reach the same decisions?

    .venv/bin/python benchmarks/compare_watermark_runs.py before.json after.json

For detector changes meant to change speed, not answers: every cell (image × attack) must have
the same detected / exact ID / false positive / content match, and the scores may differ only
by rounding. Exit 1 when a decision differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DECISIONS = ("detected", "exact", "false_positive", "content_match")
SCORES = ("score", "unmarked_score")


def compare(a: dict, b: dict, method: str = "guard") -> tuple[int, list[str], float]:
    """(decisions compared, differences in words, largest relative score difference)."""
    ia = {(x["group"], x["name"]): x["methods"][method] for x in a["images"]}
    ib = {(x["group"], x["name"]): x["methods"][method] for x in b["images"]}
    if ia.keys() != ib.keys():
        return 0, ["the runs are over different images"], float("inf")
    n, diffs, worst = 0, [], 0.0
    for image, ga in ia.items():
        gb = ib[image]
        for field in DECISIONS:
            for attack, value in ga[field].items():
                n += 1
                if gb[field].get(attack) != value:
                    diffs.append(f"{image} {attack} {field}: {value} -> {gb[field].get(attack)}")
        for field in SCORES:
            for attack, value in ga[field].items():
                other = gb[field].get(attack)
                if value is not None and other is not None:
                    worst = max(worst, abs(value - other) / max(1.0, abs(value)))
    return n, diffs, worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    args = ap.parse_args()
    n, diffs, worst = compare(
        json.loads(args.before.read_text()), json.loads(args.after.read_text())
    )
    for line in diffs:
        print(line)
    print(f"{n} decisions compared, {len(diffs)} differ; largest relative score change {worst:.1e}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
