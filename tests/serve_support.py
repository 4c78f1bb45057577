"""Shared by the `guard serve` tests: a signed picture, its stripped copy, a live server."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers import art
from PIL import Image

HOST = "127.0.0.1"


@dataclass
class Signed:
    original: Path  # the unsigned picture
    path: Path  # the signed PNG
    watermark_id: str
    manifest: str  # its active manifest label
    stripped: bytes  # a JPEG re-encode of its pixels: no metadata at all


def signed_picture(folder: Path, ledger: Path, *, seed: int = 0, size=(320, 256)) -> Signed:
    import guard

    src = folder / f"art{seed}.png"
    art(*size, seed=seed).save(src)
    with guard.Ledger(ledger) as book:
        pub = guard.sign(src, folder / f"art{seed}.signed.png", ledger=book, author="Ada")
    return Signed(src, pub.path, pub.watermark_id, pub.manifest_label, jpeg(pub.path))


def jpeg(path: Path, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
