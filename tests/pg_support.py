"""A real PostgreSQL server for the ledger tests: Debian's `postgresql` package (.ci/run installs
it), one throwaway cluster per test session in a temp folder, reachable only through a Unix
socket there (listen_addresses=''). Each ledger a test opens is a schema of its own (a URL whose
search_path names it): 1 ms to make, where a database takes 100.

initdb and the server refuse to run as root, so as root they run as the package's `postgres`
user, who owns the folder. Without the binaries the tests that need them are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

USER = "guard"  # the cluster's superuser; the socket trusts whoever reaches the folder


def binaries() -> Path | None:
    """The newest installed server's bin folder."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


class Cluster:
    """`durable`: the server's own defaults (fsync on), for benchmarks; tests need no crash
    safety from a cluster they throw away."""

    def __init__(self, bin_dir: Path, *, durable: bool = False) -> None:
        self.bin = bin_dir
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="guard-pg-"))  # /tmp: short enough for a socket
        self.data = self.root / "data"
        self.socket = self.root
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb and postgres refuse root
            import pwd

            owner = pwd.getpwnam("postgres")  # made by Debian's package
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count()

    def _run(self, *args: str) -> None:
        proc = subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, timeout=120, cwd=self.root
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {proc.stderr or proc.stdout}")

    def start(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            "-A",
            "trust",
            "--no-sync",
            "--no-locale",
            "-E",
            "UTF8",
        )
        options = f"-c listen_addresses='' -c unix_socket_directories='{self.socket}' "
        options += "-c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@/{database}?host={self.socket}"

    def new_ledger(self) -> str:
        """The URL of a fresh, empty schema: a ledger no test has opened."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return f"{self.url()}&options=-csearch_path%3D{name}"

    def table_bytes(self, url: str) -> int:
        """What the records table takes on disk: heap, TOAST and indexes."""
        import psycopg

        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT pg_total_relation_size('records')").fetchone()
        return int(row[0])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip(
            "PostgreSQL is not installed (Debian's postgresql package; .ci/run installs it)"
        )
    try:
        cluster = Cluster(bin_dir)
    except KeyError:
        pytest.skip("running as root, and there is no `postgres` user to run PostgreSQL as")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Iterator[str]:
    """A ledger URL of this test's own; this process's pools are closed after it."""
    yield pg_cluster.new_ledger()
    from guard.ledger import postgres

    postgres.close_pools()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_at(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    """Where a test's ledgers live, on each backend in turn: `ledger_at(name)` is a SQLite file
    in tmp_path, or a PostgreSQL URL (the same name, the same ledger)."""
    if request.param == "sqlite":
        yield lambda name: tmp_path / f"{name}.sqlite3"
        return
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    made: dict[str, str] = {}

    def url(name: str) -> str:
        if name not in made:
            made[name] = cluster.new_ledger()
        return made[name]

    yield url
    from guard.ledger import postgres

    postgres.close_pools()
