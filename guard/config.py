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


LedgerLocation = Path | str
"""A SQLite file (a Path), or a PostgreSQL URL (a str: postgresql://… or postgres://…)."""

DATABASE_SCHEMES = ("postgresql://", "postgres://")


def ledger_location(given: str | os.PathLike[str] | None = None) -> LedgerLocation:
    """The ledger to open: `given` (--ledger), else GUARD_LEDGER, else the file in GUARD_HOME.

    The one place that tells a database from a file: a PostgreSQL URL stays a string (a Path
    would fold its `//`), anything else is a SQLite file's path.
    """
    value = (os.fspath(given) if given is not None else "") or os.environ.get("GUARD_LEDGER")
    if not value:
        return home() / "ledger.sqlite3"
    if value.lower().startswith(DATABASE_SCHEMES):
        return value
    return Path(value).expanduser()


def trust_dir() -> Path:
    """Extra trust anchors (PEM files) the user configured with `guard keys trust`."""
    return home() / "trust"
