"""The local engine: a process pool over all cores, streaming in input order, bounded memory.

The main process walks the sources and reads shard members; workers read loose files, run the
per-image function and send back small rows. At most `2 × workers` images are in flight, and
rows are written out unit by unit, so memory does not grow with the data set (only the list of
unit names does, a few hundred bytes per file or shard).

A worker that dies on a file (a crash inside a native decoder, the kernel's OOM killer) does not
stop the scan: the pool is rebuilt, the images that were in flight are retried one at a time,
and the one that kills its worker again becomes an `unverifiable` row.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from guard.errors import GuardError
from guard.scan.image import Settings, scan_item
from guard.scan.item import Item
from guard.scan.policy import Found
from guard.scan.row import ScanRow
from guard.scan.sources import Unit

FLUSH_ROWS = 2000
FLUSH_SECONDS = 30.0

_SETTINGS: Settings | None = None


def _init(settings: Settings) -> None:
    global _SETTINGS
    _SETTINGS = settings
    settings.apply_env()
    try:
        import cv2

        cv2.setNumThreads(1)  # one process per core already; threads would only contend
    except ImportError:  # pragma: no cover - OpenCV is a dependency
        pass


def _work(item: Item) -> ScanRow:
    assert _SETTINGS is not None
    return scan_item(item, _SETTINGS)


def _crashed(item: Item, settings: Settings) -> ScanRow:
    row = ScanRow(path=item.path, shard=item.shard, key=item.key)
    words = "the scanner's worker process died on this file (a crash or out of memory)"
    row.decision, row.reasons, row.signals = settings.policy.decide([Found("scan_error", words)])
    row.error = words
    return row


class PoolError(GuardError):
    """The worker processes could not be started at all."""


class _Pool:
    """A process pool that can be rebuilt after a worker dies."""

    def __init__(self, workers: int, settings: Settings) -> None:
        self.workers, self.settings = workers, settings
        self.executor: ProcessPoolExecutor | None = None
        self.results = 0  # rows received: a pool that never gave one could not start

    def start(self) -> ProcessPoolExecutor:
        if self.executor is None:
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["guard.scan.image"])
            self.executor = ProcessPoolExecutor(
                self.workers, mp_context=ctx, initializer=_init, initargs=(self.settings,)
            )
        return self.executor

    def submit(self, item: Item) -> Future[ScanRow]:
        try:
            return self.start().submit(_work, item)
        except BrokenProcessPool:
            self.rebuild()
            return self.start().submit(_work, item)

    def rebuild(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = None

    def isolated(self, item: Item) -> ScanRow:
        """Run one item alone; if its worker dies again, the item is the cause."""
        try:
            row = self.submit(item).result()
        except BrokenProcessPool:
            self.rebuild()
            if not self.results:
                raise PoolError(
                    "the scan's worker processes could not start. In a script, call guard.scan "
                    "under `if __name__ == '__main__':` (Python multiprocessing's rule), or pass "
                    "workers=0 to scan in this process"
                ) from None
            return _crashed(item, self.settings)
        self.results += 1
        return row

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None


Event = tuple[ScanRow | None, str | None]  # (a row, the unit it finishes if it is the last)


def run(units: Iterable[Unit], settings: Settings, *, workers: int) -> Iterator[Event]:
    """Rows in input order. The last row of a unit comes with the unit's id, so a caller can
    record the unit as finished together with the row (a unit with no image: (None, id))."""
    if workers <= 0:
        for unit in units:
            row = None
            for item in unit.items(settings.max_bytes):
                if row is not None:
                    yield row, None
                row = scan_item(item, settings)
            yield row, unit.id
        return

    pool = _Pool(workers, settings)
    window = 2 * workers
    # entries: (item, future) for an image, or (unit id, None) marking the end of a unit
    pending: deque[tuple[Item | str, Future[ScanRow] | None]] = deque()

    def unit_end() -> str | None:
        if pending and pending[0][1] is None:
            entry = pending.popleft()[0]
            assert isinstance(entry, str)
            return entry
        return None

    def drain_one() -> Iterator[Event]:
        entry, future = pending.popleft()
        if future is None:
            assert isinstance(entry, str)
            yield None, entry
            return
        assert isinstance(entry, Item)
        try:
            row = future.result()
        except BrokenProcessPool:
            yield from recover(entry)
            return
        pool.results += 1
        yield row, unit_end()

    def recover(first: Item) -> Iterator[Event]:
        """A worker died: every image still in flight is retried alone, in order."""
        pool.rebuild()
        queued = [(first, None), *pending]
        pending.clear()
        for i, (entry, _) in enumerate(queued):
            if isinstance(entry, Item):
                after = queued[i + 1][0] if i + 1 < len(queued) else None
                yield pool.isolated(entry), after if isinstance(after, str) else None
            elif i == 0 or not isinstance(queued[i - 1][0], Item):
                yield None, entry  # a unit with no image left

    try:
        for unit in units:
            for item in unit.items(settings.max_bytes):
                pending.append((item, pool.submit(item)))
                while len(pending) > window:
                    yield from drain_one()
            pending.append((unit.id, None))
        while pending:
            yield from drain_one()
    finally:
        pool.close()


def scan_units(
    units: Iterable[Unit],
    settings: Settings,
    *,
    workers: int | None = None,
    writer=None,
    progress: bool = True,
    total: int | None = None,
) -> Iterator[ScanRow]:
    """The local engine with the report writer and the progress bar around `run`."""
    from tqdm import tqdm

    from guard import progress as progress_rule

    workers = (os.cpu_count() or 1) if workers is None else workers
    last_flush = time.monotonic()

    def record(row: ScanRow | None, unit_id: str | None) -> None:
        nonlocal last_flush
        if writer is None:
            return
        if row is not None:
            writer.add(row)
        if unit_id is not None:
            writer.unit_done(unit_id)
            if writer.pending >= FLUSH_ROWS or time.monotonic() - last_flush > FLUSH_SECONDS:
                writer.flush()
                last_flush = time.monotonic()

    bar = tqdm(
        total=total,
        desc="scanning",
        unit="img",
        disable=progress_rule.disable(progress),
        smoothing=0.05,
        leave=True,
    )
    counts: dict[str, int] = {}
    try:
        for row, finished in run(units, settings, workers=workers):
            record(row, finished)  # before the caller sees the row: an interruption keeps it
            if row is None:
                continue
            counts[row.decision] = counts.get(row.decision, 0) + 1
            bar.update(1)
            if bar.n % 64 == 1:
                bar.set_postfix(counts, refresh=False)
            yield row
    finally:  # also when interrupted: the finished units are kept for the next run
        if writer is not None:
            writer.flush()
        bar.set_postfix(counts, refresh=False)
        bar.close()
