"""What `guard serve` was asked to do, and the limits it keeps. No web framework here."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from guard.identity import Identity

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: only this machine can reach the server."""
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request or the whole server may hold, so no upload exhausts memory.

    Defaults: a 40 MP, 32 MiB image is larger than any camera or generator output people share,
    and 16 files is a comfortable drop; at most `queue` long jobs wait behind `workers` running
    ones, and `verify_waiting` verify requests wait behind `verify_workers` running ones.
    `max_inflight_bytes` (default 8 files at their limit) bounds the upload bytes of all requests
    being answered at once, so a flood of large bodies costs 503s rather than memory; and each
    file's check (verify) is stopped after `check_budget_s`.
    """

    max_upload_bytes: int = 32 * 1024 * 1024
    max_files: int = 16
    max_pixels: int = 40_000_000
    queue: int = 8
    workers: int = 1
    verify_workers: int = 2
    verify_waiting: int = 32
    job_ttl_s: float = 3600.0
    retry_after_s: int = 5
    max_inflight_bytes: int | None = None
    check_budget_s: float = 60.0

    @property
    def max_body_bytes(self) -> int:
        """A whole request: every file at its limit plus multipart overhead."""
        return self.max_upload_bytes * self.max_files + 1024 * 1024

    @property
    def inflight_bytes(self) -> int:
        """Upload bytes the server holds for all requests at once (declared or counted)."""
        if self.max_inflight_bytes is not None:
            return self.max_inflight_bytes
        return 8 * self.max_upload_bytes

    @property
    def max_request_bytes(self) -> int:
        """One request's body: a larger one could never fit in the in-flight budget."""
        return min(self.max_body_bytes, self.inflight_bytes)


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    # a SQLite file or a postgresql:// URL; None: GUARD_LEDGER, else the file in GUARD_HOME
    ledger: Path | str | None = None
    read_only: bool = False
    token: str | None = None
    trust_files: tuple[Path, ...] = ()
    watermark_key: bytes | None = field(default=None, repr=False)
    # an Identity, or a function that returns one (called on the first sign/protect job)
    identity: Identity | Callable[[], Identity] | None = field(default=None, repr=False)
    model: str | None = None  # what protect defends against (default: SD 1.5)
    device: str = "auto"
    limits: Limits = field(default_factory=Limits)
    # federation (guard.server.federation): resolvers asked for what the local ledger lacks
    upstreams: tuple[str, ...] = ()
    upstream_only: bool = False  # no local ledger: every answer comes from the upstreams
    max_hops: int = 4  # servers a query may have passed through before this one forwards it
    cache_dir: Path | None = None  # upstream answers (None: guard's cache folder)

    def __post_init__(self) -> None:
        from guard.resolvers import checked

        self.upstreams = checked(self.upstreams)  # GuardError: not an http(s) URL
        if self.upstream_only and not self.upstreams:
            raise ValueError("--upstream-only needs at least one --upstream URL")
        if self.upstream_only and not self.read_only:
            raise ValueError(
                "--upstream-only has no ledger to sign into: add --read-only (verify and the "
                "resolution API only)"
            )
        if self.upstream_only and self.ledger is not None:
            raise ValueError("--upstream-only serves no local ledger: leave out --ledger")
        if self.max_hops < 1:
            raise ValueError("max_hops must be at least 1")
        if not self.token and not is_loopback(self.host):
            raise ValueError(
                f"binding to {self.host} lets other machines reach guard; give --token or "
                "--token-file, or bind to 127.0.0.1"
            )
        if self.token is not None and len(self.token) < 16:
            raise ValueError("the token must be at least 16 characters (use a random one)")

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)
