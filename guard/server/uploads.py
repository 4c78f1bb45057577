"""Uploads in, bounded: how many files, how many bytes, how many pixels, and a safe name.

A form's files stay in Starlette's spool (memory up to 1 MiB, then an unlinked temporary file)
until their turn: verify reads one file at a time into memory, sign and protect copy each to
their job's folder. A file over the size or pixel limit is refused on its own: it gets its own
answer and the others of the request still count. The pixel count is read from the image
header before anything is decoded; the decode itself is guard's own safe loader
(guard.media.imageio), inside verify, sign and protect.
"""

from __future__ import annotations

import io
import re
import shutil
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

from fastapi import HTTPException, Request
from PIL import Image
from starlette.datastructures import UploadFile

from guard.server.settings import Limits
from guard.server.verifying import Upload

_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]+")
CHUNK = 1024 * 1024


@dataclass
class Part:
    """One file of a form, still in the spool. `refused`: why it is not taken (over a limit)."""

    name: str  # safe, as Upload.name
    file: UploadFile
    refused: str | None = None

    async def upload(self) -> Upload:
        await self.file.seek(0)
        return Upload(self.name, await self.file.read())

    def save(self, path: Path) -> None:
        """Copy it to `path` (a new file) without holding it in memory; blocking."""
        self.file.file.seek(0)
        with path.open("xb") as out:
            shutil.copyfileobj(self.file.file, out, CHUNK)


def safe_name(raw: str | None, default: str = "image") -> str:
    """The last path component, with anything but plain characters replaced; never empty,
    never hidden, never a path."""
    base = PureWindowsPath(PurePosixPath(raw or "").name).name
    base = _UNSAFE.sub("_", base).strip(" .")[:100]
    return base or default


def pixel_problem(name: str, image: IO[bytes], limits: Limits) -> str | None:
    """Why an image whose header declares more pixels than the server accepts is refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(image) as im:
                w, h = im.size
    except Exception:
        return None  # not decodable here: guard's loader gives the precise reason
    if w * h > limits.max_pixels:
        return (
            f"{name}: {w}x{h} pixels is over this server's limit of "
            f"{limits.max_pixels / 1e6:.3g} MP"
        )
    return None


def check_pixels(upload: Upload, limits: Limits) -> None:
    """Refuse an image whose header declares more pixels than the server accepts (413)."""
    problem = pixel_problem(upload.name, io.BytesIO(upload.data), limits)
    if problem:
        raise HTTPException(413, problem)


@asynccontextmanager
async def read_form(
    request: Request, limits: Limits, field: str = "files"
) -> AsyncIterator[tuple[list[Part], dict[str, str]]]:
    """The files of a multipart form (field `files`), each refused or not, and its other
    fields; the files can be read until the block ends."""
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
        parts = [_part(f, limits) for f in files]
        yield parts, fields


def _part(f: UploadFile, limits: Limits) -> Part:
    name = safe_name(f.filename)
    f.file.seek(0, io.SEEK_END)
    size = f.file.tell()
    problem = _size_problem(name, size, limits)
    if problem is None:
        f.file.seek(0)
        problem = pixel_problem(name, f.file, limits)
    return Part(name, f, problem)


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
    problem = _size_problem(name, size, limits)
    if problem:
        raise HTTPException(413, problem)


def _size_problem(name: str, size: int, limits: Limits) -> str | None:
    if size > limits.max_upload_bytes:
        return f"{name}: over this server's limit of {limits.max_upload_bytes / 2**20:.3g} MiB"
    return None
