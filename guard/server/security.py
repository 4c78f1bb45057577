"""What every response and every request goes through.

- Headers: a strict Content-Security-Policy (the page loads only its own script and style),
  nosniff, no referrer, no framing.
- Request bodies are counted as they arrive and cut off at the limit (413), whatever
  Content-Length claims, so no upload can fill memory or disk.
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


class Guardrails:
    """Pure ASGI middleware: security headers, the body limit and the Host check."""

    def __init__(self, app: ASGIApp, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings
        self.limit = settings.limits.max_body_bytes

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
        if declared.isdigit() and int(declared) > self.limit:
            await _json(send_with_headers, 413, "request too large for this server")
            return

        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, counted_receive, send_with_headers)
        except BodyTooLarge:
            if not started:
                await _json(send_with_headers, 413, "request too large for this server")


def _local_host(host: bytes) -> bool:
    name = host.decode("latin-1").strip()
    if name.startswith("["):  # [::1]:8765
        name = name[1 : name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    return bool(name) and is_loopback(name)


async def _json(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def check_write(request: Request) -> None:
    """FastAPI dependency of every mutating endpoint: token (when set) and same-origin."""
    settings: ServeSettings = request.app.state.settings
    if settings.token:
        given = _bearer(request)
        if given is None or not hmac.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(
                401,
                "this server needs its token: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
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
        "queue": lim.queue,
    }
