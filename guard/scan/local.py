"""The local engine: a process pool over all cores, streaming in input order, bounded memory.

The main process walks the sources and reads shard members; workers read loose files, run the
per-image function and send back small rows. At most `2 × workers` images are in flight, and
rows are written out unit by unit, so memory does not grow with the data set (only the list of
unit names does, a few hundred bytes per file or shard).

A worker that dies on a file (a crash inside a native decoder, the kernel's OOM killer) does not
stop the scan: the pool is rebuilt, the images that were in flight are retried one at a time,
and the one that kills its worker again becomes an `unverifiable` row.

Nor does a file whose check never ends (a decoder caught in a loop): each worker says when it
begins an image, and one still at it after `Settings.file_timeout` seconds is killed. That image
becomes an `unverifiable` row; the pool is rebuilt and the other images in flight run again.
Only the oldest image in flight is ever waited on (rows come out in input order), and a later
one's time counts from when it began, so none can hold the scan past its own budget.

The pool runs a `Job`: the scan's (`ScanJob`, a row per image) or `guard.verify_many`'s (a
verdict per file, guard.scan.batch), with the same order, bounds, crash and time-out handling.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.queues import SimpleQueue
from typing import Any, Generic, Protocol, TypeVar

from guard.errors import GuardError
from guard.scan import budget, forkserver
from guard.scan.image import Settings, scan_item
from guard.scan.item import Item
from guard.scan.policy import Found
from guard.scan.row import ScanRow
from guard.scan.sources import Unit

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

FLUSH_ROWS = 2000
FLUSH_SECONDS = 30.0

# how often the oldest image in flight is looked at while its worker has not yet said it began
START_POLL = 0.5
# the workers' starts are read at least this often (in rows): a few KB in their pipe, never 64 KB
READ_STARTS_EVERY = 64

Start = tuple[int, int, float]  # (the image's number in its pool, the worker's pid, when it began)


class Job(Protocol[R_co]):
    """What the pool runs on each item: small and picklable (sent once to each worker; its class
    at module level, so a worker imports it). The scan's rows are one job (`ScanJob`);
    `guard.verify_many`'s verdicts another (guard.scan.batch)."""

    @property
    def file_timeout(self) -> float | None: ...  # seconds one item may take in a worker

    @property
    def max_bytes(self) -> int: ...  # a shard member over this is not read

    @property
    def preload(self) -> tuple[str, ...]: ...  # modules the forkserver imports for every worker

    def setup(self) -> None:
        """Once in each worker process, before its first item."""

    def run(self, item: Item) -> R_co:
        """The item's answer. Raises only on a bug (the caller gets the exception)."""
        ...

    def failed(self, item: Item, words: str) -> R_co:
        """The answer for an item its worker could not give one for (`words` say why)."""
        ...


@dataclass(frozen=True)
class ScanJob:
    """guard scan's job: a `ScanRow` per image."""

    settings: Settings

    @property
    def preload(self) -> tuple[str, ...]:
        return forkserver.preload(self.settings.watermark)

    @property
    def file_timeout(self) -> float | None:
        return self.settings.file_timeout

    @property
    def max_bytes(self) -> int:
        return self.settings.max_bytes

    def setup(self) -> None:
        self.settings.apply_env()

    def run(self, item: Item) -> ScanRow:
        return scan_item(item, self.settings)

    def failed(self, item: Item, words: str) -> ScanRow:
        return _failed(item, self.settings, words)


_JOB: Job[Any] | None = None
_STARTS: SimpleQueue[Start] | None = None


def _init(job: Job[Any], starts: SimpleQueue[Start] | None) -> None:
    global _JOB, _STARTS
    _JOB, _STARTS = job, starts
    job.setup()
    try:
        import cv2

        cv2.setNumThreads(1)  # one process per core already; threads would only contend
    except ImportError:  # pragma: no cover - OpenCV is a dependency
        pass


def _work(item: Item, number: int) -> Any:
    assert _JOB is not None
    if _STARTS is not None:  # a budget is kept: say when this image began (time.monotonic is
        _STARTS.put((number, os.getpid(), time.monotonic()))  # the system's, in every process)
    return _JOB.run(item)


CRASHED = "the worker process died on this file (a crash or out of memory)"


def _failed(item: Item, settings: Settings, words: str) -> ScanRow:
    """The row of an image its worker could not answer for."""
    row = ScanRow(path=item.path, shard=item.shard, key=item.key)
    row.decision, row.reasons, row.signals = settings.policy.decide([Found("scan_error", words)])
    row.error = words
    return row


def _out_of_time(item: Item, job: Job[R]) -> R:
    assert job.file_timeout is not None
    return job.failed(item, budget.out_of_time(job.file_timeout))


class PoolError(GuardError):
    """The worker processes could not be started at all."""


class OutOfTime(Exception):
    """An image ran past the budget; its worker was killed, and with it the pool."""


class _Pool(Generic[R]):
    """A process pool that can be rebuilt after a worker dies."""

    def __init__(self, workers: int, job: Job[R]) -> None:
        self.workers, self.job = workers, job
        self.executor: ProcessPoolExecutor | None = None
        self.results = 0  # rows received: a pool that never gave one could not start
        # with a budget: the workers' word that they began an image, and what it said so far
        self.starts: SimpleQueue[Start] | None = None
        self.numbers: dict[Future[R], int] = {}  # each image in flight, numbered
        self.began: dict[int, tuple[int, float]] = {}  # number -> (worker pid, when it began)
        self.pids: set[int] = set()  # the workers heard from
        self.submitted = 0
        self.unread = 0  # rows taken since the workers' word was last read

    def start(self) -> ProcessPoolExecutor:
        if self.executor is None:
            ctx = forkserver.context(self.job.preload)
            self.starts = None if self.job.file_timeout is None else ctx.SimpleQueue()
            self.executor = ProcessPoolExecutor(
                self.workers,
                mp_context=ctx,
                initializer=_init,
                initargs=(self.job, self.starts),
            )
        return self.executor

    def submit(self, item: Item) -> Future[R]:
        self.submitted += 1
        try:
            future = self.start().submit(_work, item, self.submitted)
        except BrokenProcessPool:
            self.rebuild()
            future = self.start().submit(_work, item, self.submitted)
        if self.starts is not None:
            self.numbers[future] = self.submitted
        return future

    def result(self, future: Future[R]) -> R:
        """The row of an image in flight. Raises BrokenProcessPool when a worker died, and
        OutOfTime when the image has been in its worker for longer than the budget (that worker
        is killed first, which breaks the pool: the caller submits what else was in flight)."""
        limit = self.job.file_timeout
        number = self.numbers.get(future)
        # a row already back needs no start time: the workers' word is read when one is waited
        # for, and at least every READ_STARTS_EVERY rows, so their pipe never fills
        self.unread += 1
        if not future.done() or self.unread >= READ_STARTS_EVERY:
            self._read_starts()
        try:
            if limit is None or number is None:
                return future.result()
            while True:
                if future.done():  # a row that is back counts, however long it took
                    return future.result()
                began = self.began.get(number)
                wait = START_POLL if began is None else began[1] + limit - time.monotonic()
                if began is not None and wait <= 0:
                    self.kill(began[0])
                    raise OutOfTime
                try:
                    return future.result(timeout=wait)
                except TimeoutError:
                    self._read_starts()
        finally:
            self.numbers.pop(future, None)
            if number is not None:
                self.began.pop(number, None)

    def _read_starts(self) -> None:
        """Note when each image still in flight began (the word of one already answered is
        dropped, so nothing here grows with the data set)."""
        self.unread = 0
        live = set(self.numbers.values())
        while self.starts is not None and not self.starts.empty():
            number, pid, when = self.starts.get()
            self.pids.add(pid)
            if number in live:
                self.began[number] = (pid, when)

    def kill(self, *pids: int) -> None:
        """Kill the workers running these images (one that ran out of time). The executor then
        ends its other workers and fails their images, which the caller submits again."""
        for pid in set(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended just now
                pass
        self.rebuild()

    def rebuild(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self.starts is not None:
            self.starts.close()
        self.executor, self.starts = None, None
        self.numbers.clear()
        self.began.clear()
        self.pids.clear()

    def isolated(self, item: Item) -> R:
        """Run one item alone; if its worker dies again, the item is the cause."""
        try:
            row = self.result(self.submit(item))
        except OutOfTime:
            return _out_of_time(item, self.job)
        except BrokenProcessPool:
            self.rebuild()
            if not self.results:
                raise PoolError(
                    "the scan's worker processes could not start. In a script, call guard.scan "
                    "(or guard.verify_many) under `if __name__ == '__main__':` (Python "
                    "multiprocessing's rule), or pass workers=0 to run in this process"
                ) from None
            return self.job.failed(item, CRASHED)
        self.results += 1
        return row

    def close(self) -> None:
        """Let the workers finish, unless images are still in flight (the caller stopped early):
        their rows are not wanted and one may never end, so the workers are killed (killing the
        ones heard from is enough: the executor then ends the others)."""
        if self.executor is None:
            return
        self._read_starts()
        if self.numbers and self.pids:
            self.kill(*self.pids)
        else:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None


def _answered(future: Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


Event = tuple[ScanRow | None, str | None]  # (a row, the unit it finishes if it is the last)


def run(units: Iterable[Unit], settings: Settings, *, workers: int) -> Iterator[Event]:
    """Rows in input order. The last row of a unit comes with the unit's id, so a caller can
    record the unit as finished together with the row (a unit with no image: (None, id))."""
    return run_job(units, ScanJob(settings), workers=workers)


def run_job(
    units: Iterable[Unit], job: Job[R], *, workers: int
) -> Iterator[tuple[R | None, str | None]]:
    """`run` for any job: its answers in input order, each unit's last with the unit's id.
    workers <= 0 runs every item in this process."""
    if workers <= 0:
        for unit in units:
            row = None
            for item in unit.items(job.max_bytes):
                if row is not None:
                    yield row, None
                row = job.run(item)
            yield row, unit.id
        return

    pool = _Pool(workers, job)
    window = 2 * workers
    # entries: (item, future) for an image, or (unit id, None) marking the end of a unit
    pending: deque[tuple[Item | str, Future[R] | None]] = deque()

    def unit_end() -> str | None:
        if pending and pending[0][1] is None:
            entry = pending.popleft()[0]
            assert isinstance(entry, str)
            return entry
        return None

    def drain_one() -> Iterator[tuple[R | None, str | None]]:
        entry, future = pending.popleft()
        if future is None:
            assert isinstance(entry, str)
            yield None, entry
            return
        assert isinstance(entry, Item)
        try:
            row = pool.result(future)
        except BrokenProcessPool:
            yield from recover(entry)
            return
        except OutOfTime:
            yield from overran(entry)
            return
        pool.results += 1
        yield row, unit_end()

    def overran(item: Item) -> Iterator[tuple[R | None, str | None]]:
        """The oldest image ran out of time and its worker was killed, taking the pool down:
        the images still in flight go to a fresh pool, in order (rows already back are kept)."""
        for i in range(len(pending)):
            entry, future = pending[i]
            if isinstance(entry, Item) and future is not None and not _answered(future):
                pending[i] = (entry, pool.submit(entry))
        yield _out_of_time(item, job), unit_end()

    def recover(first: Item) -> Iterator[tuple[R | None, str | None]]:
        """A worker died: every image still in flight is retried alone, in order."""
        pool.rebuild()
        queued: list[tuple[Item | str, Future[R] | None]] = [(first, None), *pending]
        pending.clear()
        for i, (entry, _) in enumerate(queued):
            if isinstance(entry, Item):
                after = queued[i + 1][0] if i + 1 < len(queued) else None
                yield pool.isolated(entry), after if isinstance(after, str) else None
            elif i == 0 or not isinstance(queued[i - 1][0], Item):
                yield None, entry  # a unit with no image left

    try:
        for unit in units:
            for item in unit.items(job.max_bytes):
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
