"""The ledger in PostgreSQL: one database that many writers (processes, hosts, GPU workers) and
several `guard serve` replicas share. `--ledger postgresql://…` or GUARD_LEDGER opens it.

psycopg 3 is imported only here, and this module only when a ledger URL is opened. A process
keeps one connection pool per URL and mode, shared by every Ledger it opens (a server thread's,
a publish step's), so opening a Ledger costs a pooled query, not a connection. The first open
in a process migrates the schema under an advisory lock, so writers starting together never
race on it; a read-only ledger runs every statement in a read-only transaction and migrates
nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from guard.ledger.record import LedgerError
from guard.ledger.table import (
    COLUMNS,
    INDEXES,
    LEDGER_VERSION,
    RECORD_COLUMNS,
    create_table,
    declaration,
)

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg_pool import ConnectionPool

MIGRATION_LOCK = 0x6775617264  # "guard": one migrating process at a time, in every database
POOL_MAX = 8  # connections per process: a server's threads queue for them
CONNECT_TIMEOUT_S = 10
# the bytes a record keeps: lz4 is quick both ways, and pglz gives up on a store that shrinks
# by less than 25 % (JPEG thumbnails and base64 do)
COMPRESSED = ("manifest", "thumbnail", "fingerprint")


@dataclass
class _Shared:
    pool: ConnectionPool[Any]
    columns: frozenset[str]


_POOLS: dict[tuple[int, str, bool], _Shared] = {}  # (process, URL, read-only); never crosses a fork
_POOLS_LOCK = threading.Lock()


class PostgresBackend:
    def __init__(self, url: str, *, read_only: bool) -> None:
        self.where = shown(url)
        shared = _shared(url, read_only, self.where)
        self._pool = shared.pool
        self.columns = shared.columns

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._errors(), self._pool.connection() as conn:
            return conn.execute(_pg(sql), args).fetchall()

    def stream(self, sql: str) -> Iterator[Any]:
        """A server-side cursor: a ledger of a million records is never held at once."""
        with (
            self._errors(),
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(name="guard_records") as cur,
        ):
            cur.itersize = 256
            cur.execute(_pg(sql))
            yield from cur

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Callable[[str, tuple[Any, ...]], int]]:
        with self._errors(), self._pool.connection() as conn, conn.transaction():
            yield lambda sql, args: conn.execute(_pg(sql), args).rowcount

    def close(self) -> None:
        """The pool stays for the next Ledger this process opens (closed at exit)."""

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        import psycopg
        import psycopg_pool

        try:
            yield
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            raise LedgerError(
                f"{self.where}: opened read-only", reason="the ledger is opened read-only"
            ) from exc
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise _unusable(self.where, exc, "cannot be used") from exc
        except psycopg.Error as exc:  # a role without the rights, a table changed by hand
            raise _unusable(self.where, exc, "refused the ledger's statement") from exc


def _pg(sql: str) -> str:
    """The ledger's SQL names its parameters `?`, as sqlite3 does; psycopg's are `%s`."""
    return sql.replace("?", "%s")


def _shared(url: str, read_only: bool, where: str) -> _Shared:
    key = (os.getpid(), url, read_only)
    with _POOLS_LOCK:
        if key in _POOLS:
            return _POOLS[key]
        import psycopg
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        try:
            # one plain connection first: a wrong URL fails at once with the server's words,
            # where a pool would retry in the background until its timeout
            with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                if not read_only:
                    _migrate(conn)
                columns = _columns(conn)
        except psycopg.Error as exc:
            raise _unusable(where, exc, "cannot be opened") from exc
        _check_schema(where, columns)
        pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_MAX,
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=_read_only if read_only else None,
            name=f"guard-ledger{'-ro' if read_only else ''}",
            open=True,
        )
        _POOLS[key] = shared = _Shared(pool, columns)
        return shared


def _read_only(conn: Connection[Any]) -> None:
    conn.execute("SET default_transaction_read_only = on")


def _columns(conn: Connection[Any]) -> frozenset[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = 'records'"
    ).fetchall()
    return frozenset(row[0] for row in rows)


def _version(conn: Connection[Any]) -> int:
    made = conn.execute("SELECT to_regclass('guard_ledger') IS NOT NULL").fetchone()
    if not (made and made[0]):
        return 0
    row = conn.execute("SELECT max(version) FROM guard_ledger").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _migrate(conn: Connection[Any]) -> None:
    """Create the table, or add what a newer guard knows to one an older guard made.

    A current database is only read (a writer's role needs no CREATE right); otherwise the
    first writer migrates under a transaction-scoped advisory lock while the others wait.
    """
    if _version(conn) >= LEDGER_VERSION:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        version = _version(conn)
        if version >= LEDGER_VERSION:
            return
        conn.execute(create_table(blob="BYTEA"))
        have = _columns(conn)
        for name in COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE records ADD COLUMN {name} {declaration(name, 'BYTEA')}")
        for index in INDEXES:
            conn.execute(index)
        if _has_lz4(conn):
            for name in COMPRESSED:
                conn.execute(f"ALTER TABLE records ALTER COLUMN {name} SET COMPRESSION lz4")
        conn.execute("CREATE TABLE IF NOT EXISTS guard_ledger (version INTEGER NOT NULL)")
        conn.execute("DELETE FROM guard_ledger")
        conn.execute("INSERT INTO guard_ledger (version) VALUES (%s)", (LEDGER_VERSION,))


def _has_lz4(conn: Connection[Any]) -> bool:
    """PostgreSQL 14 and later, built with lz4 (Debian's is)."""
    row = conn.execute(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
        "AND 'lz4' = ANY(enumvals)"
    ).fetchone()
    return row is not None


def _check_schema(where: str, columns: frozenset[str]) -> None:
    missing = [c for c in (*RECORD_COLUMNS, "state") if c not in columns]
    if not missing:
        return
    why = "no guard ledger there" if not columns else f"written by an older guard (no {missing[0]})"
    raise LedgerError(
        f"{where}: {why}; a read-only ledger is never created or upgraded (open it once "
        "without --read-only, e.g. `guard ledger export`, to make or upgrade it)",
        reason=why,
    )


def _unusable(where: str, exc: BaseException, what: str) -> LedgerError:
    words = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return LedgerError(
        f"{where}: the ledger database {what} ({words}); check --ledger or GUARD_LEDGER",
        reason=f"the ledger database {what}",
    )


def shown(url: str) -> str:
    """The URL as messages and logs may show it: without its password."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}{':***' if ':' in user else ''}@{host}"
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, True)]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="/")))


def close_pools() -> None:
    """Close every pool this process opened (at exit; tests between databases)."""
    with _POOLS_LOCK:
        mine = [k for k in _POOLS if k[0] == os.getpid()]
        for key in mine:
            _POOLS.pop(key).pool.close()


atexit.register(close_pools)
