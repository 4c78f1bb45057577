"""What every response and every request goes through.

- Headers: a strict Content-Security-Policy (the page loads only its own script and style),
  nosniff, no referrer, no framing.
- Upload bytes are bounded before they are read: a declared Content-Length over one request's
  limit is a 413, and one that does not fit in what is left of the server-wide in-flight budget
  a 503 with Retry-After, both answered without reading the body; a body without a
  Content-Length is counted against the same limit and budget as it arrives, so a flood of large
  uploads costs refusals, not memory or disk.
- On a loopback binding, the Host header must name this machine: a web page elsewhere cannot
  reach the server through DNS rebinding.
- Mutating endpoints (sign, protect, jobs) need the token when one is set, and never accept a
  request that a browser marks as coming from another site (cross-site request forgery).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from guard.server.settings import ServeSettings, is_loopback

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class BodyTooLarge(Exception):
    pass


class BudgetSpent(Exception):
    pass


class Guardrails:
    """Pure ASGI middleware: security headers, the upload limits and the Host check."""

    def __init__(self, app: ASGIApp, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings
        self.limit = settings.limits.max_request_bytes
        self.budget = settings.limits.inflight_bytes
        self.in_flight = 0  # upload bytes of the requests being answered (one event loop: no lock)
        self.retry_after = str(settings.limits.retry_after_s).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in HEADERS if k not in have]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if self.settings.loopback and not _local_host(headers.get(b"host", b"")):
            await _json(send_with_headers, 421, "this server answers only to localhost")
            return
        declared = headers.get(b"content-length", b"")
        reserved = 0
        if declared.isdigit():
            if int(declared) > self.limit:
                await self._too_large(send_with_headers)
                return
            if self.in_flight + int(declared) > self.budget:
                await self._busy(send_with_headers)
                return
            reserved = int(declared)
            self.in_flight += reserved

        received = 0

        async def counted_receive() -> Message:
            nonlocal received, reserved
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge
                if received > reserved:  # no Content-Length: reserve what arrives, as it arrives
                    if self.in_flight + received - reserved > self.budget:
                        raise BudgetSpent
                    self.in_flight += received - reserved
                    reserved = received
            return message

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except BodyTooLarge:
            if not started:
                await self._too_large(send_with_headers)
        except BudgetSpent:
            if not started:
                await self._busy(send_with_headers)
        finally:
            self.in_flight -= reserved  # held until the answer is sent: the uploads live as long

    async def _too_large(self, send: Send) -> None:
        mib = self.limit / 2**20
        await _json(send, 413, f"request too large for this server (at most {mib:.3g} MiB)")

    async def _busy(self, send: Send) -> None:
        await _json(
            send,
            503,
            "the server is receiving as many uploads as it holds at once; try again shortly",
            [(b"retry-after", self.retry_after)],
        )


def _local_host(host: bytes) -> bool:
    name = host.decode("latin-1").strip()
    if name.startswith("["):  # [::1]:8765
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return bool(name) and is_loopback(name)


async def _json(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def check_write(request: Request) -> None:
    """FastAPI dependency of every mutating endpoint: token (when set) and same-origin."""
    settings: ServeSettings = request.app.state.settings
    if settings.token:
        given = _bearer(request)
        if given is None:
            raise HTTPException(
                401,
                "this server needs its token: enter it in the Token box at the top of the page "
                "(from a program: send 'Authorization: Bearer <token>')",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(
                401,
                "that is not this server's token: check what is in the Token box at the top of "
                "the page (from a program: the 'Authorization: Bearer' header)",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        raise HTTPException(403, "requests from other sites are refused")
    origin = request.headers.get("origin")
    if origin and origin != "null" and _authority(origin) != request.headers.get("host"):
        raise HTTPException(403, "requests from other sites are refused")
    if origin == "null":
        raise HTTPException(403, "requests from other sites are refused")


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _authority(origin: str) -> str:
    return origin.split("://", 1)[-1].rstrip("/")


def public_limits(settings: ServeSettings) -> dict[str, Any]:
    lim = settings.limits
    return {
        "max_upload_bytes": lim.max_upload_bytes,
        "max_files": lim.max_files,
        "max_pixels": lim.max_pixels,
        "max_request_bytes": lim.max_request_bytes,
        "check_budget_s": lim.check_budget_s,
        "queue": lim.queue,
    }
