"""Each file's check (verify, and the card a page shows) in a worker process, within a budget.

A thread cannot be stopped: a decoder stuck in C, or Python that never yields, would hold it,
and with it a verify slot, for as long as it likes. So the server keeps `verify_workers`
processes (started on first use, each a fresh interpreter: the server runs threads), sends
each one file at a time, and waits `Limits.check_budget_s` for the answer; a worker that has
not answered by then is killed (SIGKILL), the file gets an error, and a new worker takes its
place on the next check.

The budget covers everything verify does with one file, from the moment the file is handed to
a worker that is up: decoding, C2PA validation, the watermark, the ledger lookup and the content
comparison, the card's thumbnails. It does not cover receiving the upload (bounded by the size
limits), the header's pixel check, the wait for a free worker (guard.server.admission bounds
that), nor a worker's start. Workers only read the ledger (Ledger(read_only=True)).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.errors import GuardError
from guard.server.errors import ServerError, client_message, status_for

if TYPE_CHECKING:
    from guard.ledger import Ledger
    from guard.resolvers import Resolvers
    from guard.server.ledgers import Ledgers
    from guard.server.settings import ServeSettings
    from guard.server.verifying import Upload

log = logging.getLogger("guard.server")
START_S = 120.0  # a worker imports guard, c2pa and numpy: seconds on a busy machine


@dataclass(frozen=True)
class Context:
    """What a worker is started with: the server's settings that verify reads."""

    ledger: Path | str  # a SQLite file or a PostgreSQL URL
    trust_files: tuple[Path, ...]
    watermark_key: bytes | None
    resolvers: Resolvers | None = None  # the upstreams (guard.server.federation), if any


class Worker:
    """The state one worker process keeps between files: its context and its ledger."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self._ledger: Ledger | None = None

    def ledger(self) -> Ledger:
        if self._ledger is None:
            from guard.ledger import Ledger

            self._ledger = Ledger(self.context.ledger, read_only=True)
        return self._ledger


Target = Callable[[str, str, bytes, "bytes | None", Worker], dict[str, Any]]


def check(
    kind: str, name: str, data: bytes, sidecar: bytes | None, worker: Worker
) -> dict[str, Any]:
    """One file's check, in a worker: 'card' is what /api/verify shows, 'verdict' the
    `guard verify --json` object alone (byContent)."""
    from guard.server.cards import card
    from guard.server.verifying import Upload, verify_upload

    ledger = worker.ledger()
    upload = Upload(name, data)
    verdict = verify_upload(
        upload,
        trust_files=worker.context.trust_files,
        watermark_key=worker.context.watermark_key,
        ledger=ledger,
        sidecar=sidecar,
        resolvers=worker.context.resolvers,
    )
    return card(verdict, data, ledger) if kind == "card" else verdict.to_dict()


class Checks:
    """The pool of check workers of one server. `target` is the check a worker runs (tests
    give one that never ends); set it before the first check."""

    def __init__(
        self, settings: ServeSettings, ledgers: Ledgers, resolvers: Resolvers | None = None
    ) -> None:
        self.settings = settings
        self.ledgers = ledgers
        self.resolvers = resolvers
        self.target: Target = check
        self.budget_s = settings.limits.check_budget_s
        self._size = settings.limits.verify_workers
        self._idle: queue.Queue[_Process] = queue.Queue()
        self._all: set[_Process] = set()
        self._starting = 0
        self._lock = threading.Lock()
        self._closed = False

    def card(self, upload: Upload, sidecar: bytes | None = None) -> dict[str, Any]:
        return self._run("card", upload, sidecar)

    def verdict(self, upload: Upload) -> dict[str, Any]:
        return self._run("verdict", upload, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        for w in workers:
            w.stop()

    def _run(self, kind: str, upload: Upload, sidecar: bytes | None) -> dict[str, Any]:
        """Blocking: call it from a thread (Admission.run does)."""
        worker = self._acquire()
        try:
            worker.send.send((kind, upload.name, sidecar))
            worker.send.send_bytes(upload.data)
            if not worker.replies.poll(self.budget_s):
                self._discard(worker)
                raise ServerError(
                    f"{upload.name}: checking it took longer than this server's budget of "
                    f"{self.budget_s:g} s for one file, so it was stopped",
                    500,
                )
            reply = worker.replies.recv()
        except (EOFError, OSError):  # the worker died (killed from outside, out of memory)
            self._discard(worker)
            log.error("a check worker died while checking %s", upload.name)
            raise ServerError(
                f"{upload.name}: the server could not check this file (see the server's log)"
            ) from None
        self._release(worker)
        if reply[0] == "error":
            raise ServerError(reply[2], reply[1])
        return reply[1]

    def _acquire(self) -> _Process:
        """An idle worker, or a new one while the pool has room (Admission lets no more
        callers in than there are workers, so the wait is short)."""
        while True:
            try:
                return self._idle.get(timeout=0.05)
            except queue.Empty:
                pass
            with self._lock:
                if self._closed:
                    raise ServerError("the server is shutting down", 503)
                spawn = len(self._all) + self._starting < self._size
                if spawn:
                    self._starting += 1
            if spawn:
                break
        try:
            worker = _Process.start(self._context(), self.target)
        finally:
            with self._lock:
                self._starting -= 1
        with self._lock:
            self._all.add(worker)
        return worker

    def _context(self) -> Context:
        if not self.settings.read_only:
            self.ledgers.get()  # a writing server creates the ledger its workers read
        return Context(
            ledger=self.ledgers.path,
            trust_files=tuple(self.settings.trust_files),
            watermark_key=self.settings.watermark_key,
            resolvers=self.resolvers,
        )

    def _release(self, worker: _Process) -> None:
        if self._closed:
            worker.stop()
        else:
            self._idle.put(worker)

    def _discard(self, worker: _Process) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)


class _Process:
    """A worker: `python -c` running main() below, its stdin and stdout the two ends of the
    conversation. A fresh interpreter, not multiprocessing's spawn, so the server's own script is
    never imported again in the worker (spawn runs an unguarded script's top level there)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self.send = Connection(os.dup(proc.stdin.fileno()), readable=False)
        self.replies = Connection(os.dup(proc.stdout.fileno()), writable=False)
        proc.stdin.close()
        proc.stdout.close()

    @classmethod
    def start(cls, context: Context, target: Target) -> _Process:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from guard.server.checks import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        worker = cls(proc)
        try:
            worker.send.send(sys.path)
            worker.send.send((context, target))
            if not worker.replies.poll(START_S):
                raise EOFError
            worker.replies.recv()  # "ready"
        except (EOFError, OSError):
            worker.kill()
            raise ServerError("a check worker did not start (see the server's log)", 503) from None
        return worker

    def stop(self) -> None:
        try:
            self.send.send(None)
            self.proc.wait(2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.send.close()
        self.replies.close()


def main() -> None:
    """A worker's life: its settings, then one file at a time until told to stop or its server
    is gone. Its stdout carries the replies only: anything printed goes to stderr."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server, which stops us
    requests = Connection(os.dup(0), writable=False)
    replies = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    path = requests.recv()  # sys.path first: the target (a test's) may live on it
    sys.path[:] = [p for p in path if p not in sys.path] + sys.path
    context, target = requests.recv()
    import guard.verdict  # noqa: F401  (the imports are part of the start, not of a budget)

    worker = Worker(context)
    replies.send("ready")
    while True:
        try:
            message = requests.recv()
            if message is None:
                return
            kind, name, sidecar = message
            data = requests.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[Any, ...] = ("ok", target(kind, name, data, sidecar, worker))
        except GuardError as exc:
            reply = ("error", status_for(exc), client_message(exc))
        except Exception:
            log.exception("checking %s failed", name)
            reply = ("error", 500, f"{name}: the server could not check this file (see its log)")
        del data
        replies.send(reply)
