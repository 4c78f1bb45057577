"""One ledger connection per server thread: SQLite connections must stay in the thread that
opened them, and opening one per request would cost more than the lookup itself. A read-only
server opens every one read-only (Ledger(read_only=True): it never writes the ledger)."""

from __future__ import annotations

import threading
from pathlib import Path

from guard import config
from guard.ledger import Ledger


class Ledgers:
    """Each thread's Ledger; on PostgreSQL they share the process's pool (guard.ledger.postgres),
    so several replicas of a server can answer from one database."""

    def __init__(self, path: Path | str | None, *, read_only: bool = False) -> None:
        self.path = config.ledger_location(path)
        self.read_only = read_only
        self._local = threading.local()
        self._all: list[Ledger] = []
        self._lock = threading.Lock()

    def get(self) -> Ledger:
        ledger = getattr(self._local, "ledger", None)
        if ledger is None:
            ledger = Ledger(self.path, read_only=self.read_only)
            self._local.ledger = ledger
            with self._lock:
                self._all.append(ledger)
        return ledger

    def close(self) -> None:
        with self._lock:
            for ledger in self._all:
                try:
                    ledger.close()
                except Exception:  # SQLite refuses to close another thread's connection;
                    pass  # those close when their thread's objects are collected
            self._all.clear()
