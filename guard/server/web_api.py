"""The web page's API: verify uploads into cards; sign and protect uploads as jobs.

Verify is read-only and always served. Sign, protect and the job endpoints are mounted only
when the server is not read-only, and every one of them checks the token and the origin.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse

from guard import __version__
from guard.errors import GuardError
from guard.provenance.vocab import SOURCE_TYPES, TRAINING_VALUES, TRAINING_WORDS
from guard.server.errors import client_message
from guard.server.jobs import DONE, Job, QueueFull
from guard.server.security import check_write, public_limits
from guard.server.uploads import Part, read_form
from guard.server.work import stage

read_router = APIRouter(prefix="/api", tags=["web page"])
write_router = APIRouter(prefix="/api", tags=["web page"], dependencies=[Depends(check_write)])
FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                    "required": ["files"],
                }
            }
        },
    }
}


@read_router.get("/info", summary="What this server offers and the limits it keeps")
def info(request: Request) -> dict[str, Any]:
    from guard.protection.params import DEFAULT_STRENGTH, PRESETS

    settings = request.app.state.settings
    return {
        "version": __version__,
        "read_only": settings.read_only,
        "token_required": bool(settings.token),
        "limits": public_limits(settings),
        "presets": {k: {"eps_255": round(e * 255, 1), "steps": s} for k, (e, s) in PRESETS.items()},
        "default_preset": DEFAULT_STRENGTH,
        "trainings": {t: TRAINING_WORDS[t] for t in TRAINING_VALUES},
        "sources": {k: words for k, (_, words) in SOURCE_TYPES.items()},
    }


@read_router.post(
    "/verify",
    summary="Verify images: one card per file (the `guard verify --json` object plus plain words)",
    openapi_extra=FORM,
)
async def verify(request: Request) -> dict[str, Any]:
    """Each file gets its own answer: a card, or an error (over a limit, unreadable, over the
    check's budget); one file never decides for the others. One file at a time is in memory."""
    state = request.app.state
    results = []
    async with read_form(request, state.settings.limits) as (parts, _):
        sidecars = {
            _stem(p.name): (await p.upload()).data
            for p in parts
            if p.name.endswith(".c2pa") and p.refused is None
        }
        for part in parts:
            if part.name.endswith(".c2pa") and part.refused is None:
                continue  # a sidecar travels with the image of the same name
            if part.refused is not None:
                results.append({"file": part.name, "error": part.refused})
                continue
            upload = await part.upload()
            sidecar = sidecars.get(_stem(part.name))
            try:
                results.append(
                    await state.admission.run(partial(state.checks.card, upload, sidecar))
                )
            except GuardError as exc:  # this file's problem, in its words
                results.append(
                    {"file": part.name, "error": state.workspace.scrub(client_message(exc))}
                )
            del upload
    return {"results": results}


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


@write_router.get("/identity", summary="The server's signing identity (public facts only)")
def identity(request: Request) -> dict[str, Any]:
    facts = request.app.state.work.identity().describe()
    return {
        k: facts.get(k)
        for k in ("subject", "issuer", "not_after", "sha256_fingerprint", "algorithm")
    }


@write_router.post(
    "/sign",
    status_code=202,
    summary="Sign images with the server's identity (fields: files, training, source, author)",
    openapi_extra=FORM,
)
async def sign(request: Request) -> dict[str, Any]:
    state = request.app.state
    async with read_form(request, state.settings.limits) as (parts, fields):
        training = _choice(fields, "training", "notAllowed", TRAINING_VALUES)
        source = _choice(fields, "source", "digital-art", SOURCE_TYPES)
        author = (fields.get("author") or "").strip()[:200] or None
        return await _submit(
            request,
            "sign",
            parts,
            lambda job: state.work.sign(job, training=training, source=source, author=author),
        )


@write_router.post(
    "/protect",
    status_code=202,
    summary="Protect artworks (fields: files, strength, mode); each file becomes a job",
    openapi_extra=FORM,
)
async def protect(request: Request) -> dict[str, Any]:
    from guard.protection.params import DEFAULT_STRENGTH, MODES, PRESETS

    state = request.app.state
    async with read_form(request, state.settings.limits) as (parts, fields):
        strength = _choice(fields, "strength", DEFAULT_STRENGTH, PRESETS)
        mode = _choice(fields, "mode", "textural", MODES)
        return await _submit(
            request,
            "protect",
            parts,
            lambda job: state.work.protect(job, strength=strength, mode=mode),
        )


@write_router.get("/jobs/{job_id}", summary="A job's state, progress and result")
def job_status(request: Request, job_id: str) -> dict[str, Any]:
    return _job(request, job_id).to_dict()


@write_router.get("/jobs/{job_id}/result", summary="Download a finished job's signed image")
def job_result(request: Request, job_id: str) -> FileResponse:
    job = _job(request, job_id)
    if job.state != DONE or job.output is None or not job.output.is_file():
        raise HTTPException(409, f"job {job_id} has no result ({job.state})")
    return _file(job.output, job.output_name or job.output.name)


@write_router.get("/jobs/{job_id}/input", summary="The image the job started from")
def job_input(request: Request, job_id: str) -> FileResponse:
    job = _job(request, job_id)
    if job.input is None or not job.input.is_file():
        raise HTTPException(404, "this job's input is gone")
    return _file(job.input, job.name, attachment=False)


def _choice(fields: dict[str, str], name: str, default: str, allowed: Any) -> str:
    value = fields.get(name, default)
    if value not in allowed:
        raise HTTPException(400, f"{name} must be one of {', '.join(allowed)}")
    return value


def _file(path: Path, name: str, *, attachment: bool = True) -> FileResponse:
    """Served with the type its content has, never the type its (user-chosen) name suggests."""
    media = _image_type(path)
    if media is None:
        raise HTTPException(415, f"{name} is not an image")
    return FileResponse(
        path,
        media_type=media,
        filename=name if attachment else None,
        headers={"Cache-Control": "no-store"},
    )


def _image_type(path: Path) -> str | None:
    from PIL import Image

    from guard.media.formats import MIME

    try:
        with Image.open(path) as im:
            fmt = "JPEG" if im.format == "MPO" else im.format
    except Exception:
        return None
    return MIME.get(fmt or "")


def _job(request: Request, job_id: str) -> Job:
    job = request.app.state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, "no such job (finished jobs are kept for a while, then removed)")
    return job


async def _submit(request: Request, kind: str, parts: list[Part], work: Any) -> dict[str, Any]:
    """One job per file that is within the limits; the others are listed as `refused`, each with
    its reason (413 only when every file is refused)."""
    state = request.app.state
    queue = state.jobs
    taken = [p for p in parts if p.refused is None]
    refused = [{"file": p.name, "error": p.refused} for p in parts if p.refused is not None]
    if not taken:
        raise HTTPException(413, "; ".join(r["error"] or "" for r in refused))
    if queue.free() < len(taken):
        raise HTTPException(
            503,
            "the job queue is full; try again shortly",
            headers={"Retry-After": str(state.settings.limits.retry_after_s)},
        )
    jobs = []
    for part in taken:
        job = Job(kind=kind, name=part.name, folder=state.workspace.new_dir(kind))
        await anyio.to_thread.run_sync(stage, job, part)
        try:
            queue.submit(job, work)
        except QueueFull:
            state.workspace.remove(job.folder)
            raise HTTPException(
                503,
                "the job queue is full; try again shortly",
                headers={"Retry-After": str(state.settings.limits.retry_after_s)},
            ) from None
        jobs.append(job.to_dict())
    return {"jobs": jobs, "refused": refused}
