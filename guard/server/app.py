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
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from guard import __version__
from guard.server import errors, resolution, web_api
from guard.server.admission import Admission
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

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        app.state.jobs.close()
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
    workspace = Workspace(workspace_parent)
    ledgers = Ledgers(settings.ledger)
    app.state.settings = settings
    app.state.workspace = workspace
    app.state.ledgers = ledgers
    app.state.admission = Admission(
        limits.verify_workers, limits.verify_waiting, limits.retry_after_s
    )
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
    return app
