"""The worker pool's forkserver: one process that imports the checks once, from which every
worker is forked with them already imported.

A pool waits for it before its first answer (a fresh interpreter and about 0.3 s of imports).
Its preload names what a worker's first file would otherwise import lazily (the watermark
detector, OpenCV, PyWavelets, exiv2, SQLite: about 0.12 s in every worker), and `guard verify`
and `guard scan` start it (`start`) before their own imports, so it imports beside them on the
other core. Only the standard library is imported here, so calling `start` early costs nothing.
Measured on 2 cores (docs/benchmarks.md): a few percent of a 50-file verify, within the noise
of a single run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext

# what every worker runs: the job classes, the per-item function and verify's checks
CHECKS = (
    "guard.scan.local",
    "guard.scan.batch",
    "guard.verdict",
    "c2pa",
    "pyexiv2",
    "guard.ledger.sqlite",
)
# imported lazily by the first file whose pixels are checked for marks
MARKS = (
    "guard.watermark.engine",
    "guard.watermark.thirdparty",
    "guard.ledger.fingerprint",
    "cv2",
    "pywt",
)


# A pool pays for itself from this many files to verify on 2 free cores (docs/benchmarks.md,
# "guard verify on a folder"): it costs about 0.5 s before its first answer, against about 0.1 s
# of one core per file with the watermark check and 2.5 ms without it (and 0.3 ms of the calling
# process's time per file sent to a worker).
POOL_FROM_FILES = {True: 8, False: 400}


def auto_workers(files: int, watermark: bool) -> int:
    """Every core for a verify batch that repays the pool's start-up, else 0 (this process)."""
    if files < POOL_FROM_FILES[watermark]:
        return 0
    return min(os.cpu_count() or 1, files)


def preload(watermark: bool) -> tuple[str, ...]:
    """The modules a pool's workers need, imported once in the forkserver."""
    return CHECKS + MARKS if watermark else CHECKS


def context(modules: tuple[str, ...]) -> ForkServerContext:
    """The forkserver context, told what to import should it not be running yet (a forkserver
    already started, by `start` or an earlier pool, keeps what it imported)."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(modules))
    return ctx


def start(modules: tuple[str, ...]) -> None:
    """Start the forkserver now (if it is not running), so its imports overlap the caller's."""
    context(modules)
    forkserver.ensure_running()
