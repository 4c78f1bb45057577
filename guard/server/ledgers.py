"""One ledger connection per server thread: SQLite connections must stay in the thread that
opened them, and opening one per request would cost more than the lookup itself."""

from __future__ import annotations

import threading
from pathlib import Path

from guard.ledger import Ledger


class Ledgers:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[Ledger] = []
        self._lock = threading.Lock()

    def get(self) -> Ledger:
        ledger = getattr(self._local, "ledger", None)
        if ledger is None:
            ledger = Ledger(self.path)
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
