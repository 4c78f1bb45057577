"""Where guard keeps its state, overridable per process so tests and platforms can isolate it."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """Root of guard's per-user state (identity, ledger, trust list).

    `GUARD_HOME` wins so that tests, CI and multi-tenant platforms never touch a real user's keys.
    """
    env = os.environ.get("GUARD_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("guard", appauthor=False))


def identity_dir() -> Path:
    return home() / "identity"


def ledger_path() -> Path:
    env = os.environ.get("GUARD_LEDGER")
    return Path(env).expanduser() if env else home() / "ledger.sqlite3"


def trust_dir() -> Path:
    """Extra trust anchors (PEM files) the user configured with `guard keys trust`."""
    return home() / "trust"
