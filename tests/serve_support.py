"""Shared by the `guard serve` tests: a signed picture, its stripped copy, a live server."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
def live_server(app, port: int | None = None) -> Iterator[str]:
    """The app under uvicorn on a free loopback port (or `port`), in a thread; yields its base
    URL."""
    import uvicorn

    port = port or free_port()
    # a bounded shutdown: a test's hostile server may hold a connection open (a slow drip)
    config = uvicorn.Config(
        app, host=HOST, port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
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


@contextlib.contextmanager
def serve_process(home: Path, *args: str, port: int | None = None) -> Iterator[str]:
    """`guard serve ARGS` as a user runs it: its own process and GUARD_HOME, a free loopback
    port (or `port`: a server that names this one can then start beside it); yields its base
    URL once it answers, and stops it (and its check workers) after."""
    import httpx

    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARD_")}
    env["GUARD_HOME"] = str(home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "guard", "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"guard serve {' '.join(args)} stopped: {err}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/services/supportedAlgorithms", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("guard serve did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


def entered(stack: contextlib.ExitStack, *servers: contextlib.AbstractContextManager[str]):
    """Starts servers at once, each in a thread of its own (a start is mostly waiting for a
    process to import), onto `stack`; their URLs."""
    with ThreadPoolExecutor(len(servers)) as pool:
        started = [pool.submit(server.__enter__) for server in servers]
    for server, future in zip(servers, started, strict=True):
        if future.exception() is None:
            stack.push(server.__exit__)
    return [future.result() for future in started]


def folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file in a folder with its size and modification time: what "changed no file" means
    when the tests run as root, for whom a read-only mode bit stops no write."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def spinning_check(kind: str, name: str, data: bytes, sidecar: bytes | None, context) -> dict:
    """The server's own check, except for a file named spin*: for that one it spins in pure
    Python forever, holding the GIL, which no thread-based timeout could ever stop."""
    from guard.server.checks import check

    if name.startswith("spin"):
        while True:
            pass
    return check(kind, name, data, sidecar, context)
