"""`create_app(settings)`: the FastAPI application behind `guard serve`.

/                      the web page (Verify, Protect, Sign)
/static/…              its script and style (package data, no build step)
/api/…                 the page's API (web_api)
/matches, /manifests, /services   the C2PA soft binding resolution API (resolution)
/openapi.json          the OpenAPI description of all of it
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from guard import __version__
from guard.server import errors, resolution, web_api
from guard.server.admission import Admission
from guard.server.checks import Checks
from guard.server.federation import Federation
from guard.server.jobs import JobQueue
from guard.server.ledgers import Ledgers
from guard.server.security import Guardrails
from guard.server.settings import ServeSettings
from guard.server.work import Work
from guard.server.workspace import Workspace

STATIC = resources.files("guard.server") / "static"
DESCRIPTION = """guard's local web service: verify, sign and protect images, and resolve guard's
watermark to its C2PA manifest through the C2PA Soft Binding Resolution API
(`/matches/byBinding`, `/matches/byContent`, `/manifests/{manifestId}`,
`/services/supportedAlgorithms`). Errors are JSON: `{"error": "..."}`. See docs/serve.md."""


def create_app(settings: ServeSettings | None = None, *, workspace_parent: Any = None) -> FastAPI:
    settings = settings or ServeSettings()
    limits = settings.limits

    workspace = Workspace(workspace_parent)
    ledger_path = settings.ledger
    if settings.upstream_only:  # no ledger of its own: an empty one, so every answer is upstream's
        from guard.ledger import Ledger

        ledger_path = workspace.root / "no-local-ledger.sqlite3"
        Ledger(ledger_path).close()
    ledgers = Ledgers(ledger_path, read_only=settings.read_only)
    if settings.read_only:
        ledgers.get()  # a missing, unreadable or foreign ledger stops the start (LedgerError)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.jobs.close()
        app.state.checks.close()
        app.state.ledgers.close()
        app.state.workspace.close()

    app = FastAPI(
        title="guard serve",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # Swagger UI would load scripts from a CDN, which the CSP forbids
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.workspace = workspace
    app.state.ledgers = ledgers
    app.state.federation = federation = Federation(settings)
    app.state.admission = Admission(
        limits.verify_workers, limits.verify_waiting, limits.retry_after_s
    )
    app.state.checks = Checks(settings, ledgers, federation.worker_resolvers())
    app.state.work = Work(settings, ledgers)
    app.state.jobs = JobQueue(
        workers=limits.workers,
        size=limits.queue,
        ttl=limits.job_ttl_s,
        scrub=workspace.scrub,
        on_expire=lambda job: workspace.remove(job.folder),
    )
    errors.install(app)
    app.include_router(resolution.router)
    app.include_router(web_api.read_router)
    if not settings.read_only:
        app.include_router(web_api.write_router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.add_middleware(Guardrails, settings=settings)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI description in OpenAPI 3.0.3, the version of the C2PA Soft Binding Resolution
    API's own definition: its component schemas under the specification's names, no 422 (the
    server answers a malformed request with 400), no JSON Schema forms that 3.0 lacks."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version="3.0.3",
            description=app.description,
            routes=app.routes,
        )
        for item in doc.get("paths", {}).values():
            for op in item.values():
                op.get("responses", {}).pop("422", None)
                for param in op.get("parameters", []):
                    param["schema"] = _parameter_schema(param["schema"])
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        schemas.update(resolution.SCHEMAS)
        app.openapi_schema = doc
    return app.openapi_schema


def _parameter_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """In OpenAPI 3.0 terms: an optional parameter is a plain one (absent is not null, and 3.0
    has no null type), and the titles FastAPI makes of parameter names say nothing."""
    out = {k: v for k, v in schema.items() if k not in ("title", "anyOf")}
    kept = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(kept) == 1:
        out = {**kept[0], **out}
    elif kept:
        out["anyOf"] = kept
    return out
