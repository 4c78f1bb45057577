"""The labelled corpus, answered by guard and by Spawning's datadiligence, side by side.

`benchmarks/bench_scan.py --compare` prints the table in docs/scan.md from this; the tests check
guard's column. datadiligence is a dev/bench dependency, imported only here, inside functions.
"""

from __future__ import annotations

import io
import tarfile
import tempfile

from tests.scan_corpus.corpus import Labelled


def datadiligence_says(item: Labelled) -> str:
    """What Spawning's datadiligence answers for one corpus file: 'allowed', 'not allowed', or
    'error: ...'. Files go through its FileEvaluator (C2PA), recorded headers through its
    header rules (X-Robots-Tag, TDM-Rep), as a pipeline using it would call them."""
    import contextlib
    import logging
    import os

    with contextlib.redirect_stdout(io.StringIO()):  # it prints a note about its API key
        import datadiligence as dd

    logging.getLogger().setLevel(logging.CRITICAL)  # it logs every failure it then ignores
    try:
        allowed = True
        if item.headers:
            allowed = dd.is_allowed(headers=item.headers)
        if "#" in item.path:  # a shard member: give it the file an extraction would give
            shard, member = item.path.split("#", 1)
            with tarfile.open(shard) as tar, tempfile.TemporaryDirectory() as tmp:
                fh = tar.extractfile(member)
                local = os.path.join(tmp, os.path.basename(member))
                with open(local, "wb") as out:
                    out.write(fh.read() if fh else b"")
                allowed = allowed and dd.is_allowed(path=local)
        else:
            allowed = allowed and dd.is_allowed(path=item.path)
    except Exception as exc:  # report whatever it raises, as a user would meet it
        return f"error: {type(exc).__name__}"
    return "allowed" if allowed else "not allowed"


def side_by_side(labels: list[Labelled], rows) -> list[dict[str, str]]:
    """One line per corpus file: what it carries, the right answer, guard's and datadiligence's."""
    by_path = {r.path: r for r in rows}
    table = []
    for item in labels:
        row = by_path.get(item.path)
        theirs = datadiligence_says(item)
        table.append(
            {
                "file": item.path.rsplit("/", 1)[-1],
                "carries": item.carries,
                "expected": item.decision,
                "guard": row.decision if row else "(no row)",
                "guard_reason": (row.reasons[0] if row and row.reasons else ""),
                "guard_correct": bool(row and row.decision == item.decision),
                "datadiligence": theirs,
                # a gatekeeper is right when it keeps out exactly what should be kept out
                "datadiligence_correct": (theirs == "allowed") == (item.decision == "allowed"),
            }
        )
    return table
