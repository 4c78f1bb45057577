"""Every error is JSON, `{"error": "..."}`, with no filesystem path and no stack trace."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from guard.errors import GuardError, ImageInputError, OutputExistsError, TooSmallError
from guard.ledger import LedgerError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

log = logging.getLogger("guard.server")


class ServerError(GuardError):
    """A failure already in a client's words, with the HTTP status it is answered with (a check
    that ran past its budget, a worker that died)."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


def client_message(exc: GuardError) -> str:
    """What a client may read of a failure. A ledger's failure is told without its path (the
    server's log keeps the whole message); callers still scrub the upload folder's name."""
    if isinstance(exc, LedgerError):
        log.error("%s", exc)
        return "the server's ledger could not be used: " + (exc.reason or "see the server's log")
    return str(exc)


def status_for(exc: GuardError) -> int:
    if isinstance(exc, ServerError):
        return exc.status
    if isinstance(exc, LedgerError):
        return 500  # the server's own state, not the client's request
    if isinstance(exc, ImageInputError):
        return 415  # not an image this server can read (the SBR API's "invalid asset type")
    if isinstance(exc, TooSmallError):
        return 422
    if isinstance(exc, OutputExistsError):
        return 409
    return 400


def install(app: FastAPI) -> None:
    # The framework is imported here, not above: the check workers use the error words and
    # statuses of this module, and need no web framework for them.
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def scrub(request: Request, text: str) -> str:
        workspace = getattr(request.app.state, "workspace", None)
        return workspace.scrub(text) if workspace else text

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": scrub(request, str(exc.detail))},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems: list[dict[str, Any]] = [
            {"parameter": ".".join(str(p) for p in e.get("loc", ())[1:]), "problem": e.get("msg")}
            for e in exc.errors()
        ]
        words = "; ".join(f"{p['parameter'] or 'request'}: {p['problem']}" for p in problems)
        return JSONResponse({"error": f"invalid request: {words}", "problems": problems}, 400)

    @app.exception_handler(GuardError)
    async def guard_error(request: Request, exc: GuardError) -> JSONResponse:
        return JSONResponse(
            {"error": scrub(request, client_message(exc))}, status_code=status_for(exc)
        )

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"error": "internal error (see the server's log)"}, 500)
