"""Uploads in, bounded: how many files, how many bytes, how many pixels, and a safe name.

The pixel count is read from the image header before anything is decoded; the decode itself is
guard's own safe loader (guard.media.imageio), inside verify, sign and protect.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from fastapi import HTTPException, Request
from PIL import Image
from starlette.datastructures import UploadFile

from guard.server.settings import Limits

_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]+")
CHUNK = 1024 * 1024


@dataclass
class Upload:
    name: str  # safe to put in a file name and in a response
    data: bytes


def safe_name(raw: str | None, default: str = "image") -> str:
    """The last path component, with anything but plain characters replaced; never empty,
    never hidden, never a path."""
    base = PureWindowsPath(PurePosixPath(raw or "").name).name
    base = _UNSAFE.sub("_", base).strip(" .")[:100]
    return base or default


def check_pixels(upload: Upload, limits: Limits) -> None:
    """Refuse an image whose header declares more pixels than the server accepts (413)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(upload.data)) as im:
                w, h = im.size
    except Exception:
        return  # not decodable here: guard's loader gives the precise reason
    if w * h > limits.max_pixels:
        raise HTTPException(
            413,
            f"{upload.name}: {w}x{h} pixels is over this server's limit of "
            f"{limits.max_pixels / 1e6:.0f} MP",
        )


async def read_files(
    request: Request, limits: Limits, field: str = "files"
) -> tuple[list[Upload], dict[str, str]]:
    """The files of a multipart form (field `files`) and its other fields."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise HTTPException(415, "send the images as multipart/form-data (field 'files')")
    async with request.form(max_files=limits.max_files, max_fields=16) as form:
        files = [f for f in form.getlist(field) if isinstance(f, UploadFile)]
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not files:
            raise HTTPException(400, f"no files in the form field '{field}'")
        if len(files) > limits.max_files:
            raise HTTPException(413, f"at most {limits.max_files} files per request")
        uploads = []
        for f in files:
            data = await f.read(limits.max_upload_bytes + 1)
            name = safe_name(f.filename)
            _check_size(name, len(data), limits)
            upload = Upload(name, data)
            check_pixels(upload, limits)
            uploads.append(upload)
    return uploads, fields


async def read_body(request: Request, limits: Limits, name: str = "upload") -> Upload:
    """A raw request body (the resolution API's byContent), read in chunks up to the limit."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        _check_size(name, int(declared), limits)
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        _check_size(name, len(buf), limits)
    if not buf:
        raise HTTPException(400, "the request body is empty; send the image bytes")
    upload = Upload(name, bytes(buf))
    check_pixels(upload, limits)
    return upload


def _check_size(name: str, size: int, limits: Limits) -> None:
    if size > limits.max_upload_bytes:
        raise HTTPException(
            413, f"{name}: over this server's limit of {limits.max_upload_bytes // 2**20} MiB"
        )
