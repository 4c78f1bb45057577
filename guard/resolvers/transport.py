"""A deadline for a whole HTTP exchange, headers included.

httpx bounds each socket operation (connect, one read, one write) but not their sum: a server
that sends its status line and headers one byte every few seconds keeps every read under the
read timeout and never finishes. Here every socket operation of the exchange a thread is doing
waits at most what is left of that exchange's deadline (`deadline(seconds)`), and none starts
once it has passed: connecting, TLS, sending the request (a byContent upload too), the status
line, the headers, the body.

It is done in httpcore's network backend, which the sockets of an httpx client go through
(`bound(client)`); httpx is imported by the caller, only in guard.resolvers.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

    import httpcore
    import httpx

_local = threading.local()
PIECE = 4096  # bytes of a request body sent at once, each within what is left of the deadline


class NoDeadline(RuntimeError):
    """This httpx has no network backend to bound (a version guard does not know)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every socket operation this thread does inside ends by `seconds` from now."""
    outer = getattr(_local, "at", None)
    at = time.monotonic() + seconds
    _local.at = at if outer is None else min(at, outer)
    try:
        yield
    finally:
        _local.at = outer


def passed() -> bool:
    at = getattr(_local, "at", None)
    return at is not None and time.monotonic() >= at


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    at = getattr(_local, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the deadline for this answer has passed")
    return left if timeout is None else min(timeout, left)


def bound(client: httpx.Client) -> httpx.Client:
    """Put every connection of `client` (its transports, proxies too) under `deadline`."""
    transports = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if pool is None or backend is None:
            raise NoDeadline("this httpx version's connections cannot be given a deadline")
        if not isinstance(backend, Backend):
            pool._network_backend = Backend(backend)
    return client


class Backend:
    """httpcore's sync network backend, each operation within the thread's deadline."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Stream:
        import httpcore

        timeout = _left(timeout, httpcore.ConnectTimeout)
        return Stream(self.inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> Stream:
        import httpcore

        timeout = _left(timeout, httpcore.ConnectTimeout)
        return Stream(self.inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class Stream:
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        import httpcore

        return self.inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        import httpcore

        view = memoryview(buffer)
        while view:  # in small pieces, so a server that reads slowly cannot stretch one write
            piece = view[:PIECE]
            self.inner.write(bytes(piece), _left(timeout, httpcore.WriteTimeout))
            view = view[len(piece) :]

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> Stream:
        import httpcore

        timeout = _left(timeout, httpcore.ConnectTimeout)
        return Stream(self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)
