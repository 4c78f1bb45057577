"""Shared by the resolver tests: a signer's world (its CA, ledger, a stripped copy, forgeries),
a real `guard serve` over it, and tiny hostile resolvers. Every server is on 127.0.0.1, bounded,
and stopped by its test."""

from __future__ import annotations

import contextlib
import inspect
import io
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import art
from PIL import Image
from serve_support import HOST, live_server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from guard.resolvers import Limits, Resolvers

FAST = Limits(connect_s=2.0, read_s=2.0, total_s=2.0, max_manifest_bytes=2 * 1024 * 1024)


@dataclass
class World:
    ca: Path  # the signer's CA, passed with --trust
    ledger: Path  # the signer's ledger, served by guard serve
    watermark_id: str
    manifest_id: str
    store: bytes  # the record's manifest store (trusted, bound to watermark_id)
    stripped: Path  # a JPEG re-encode of the signed picture: no metadata at all
    other_picture: bytes  # trusted, bound to watermark_id, for another picture
    other_id: bytes  # trusted, for another picture and another watermark ID
    untrusted: bytes  # this picture and ID, signed by a key nobody trusts
    private_ledger: Path  # a platform's ledger: its pictures marked under a private key
    private_key: bytes
    platform_ca: Path  # the platform's CA
    private_stripped: Path  # a stripped copy of one: guard's public key reads no mark in it
    lifted: Path  # another picture carrying this picture's mark (a transplant), pixels only


_WORLD: list[World] = []


def make_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The signer's world, built once per test session (a second or more of signing) for every
    resolver test module; nothing in it is changed by a test."""
    if not _WORLD:
        _WORLD.append(_make_world(tmp_path_factory))
    return _WORLD[0]


def _make_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    import guard
    from guard import config
    from guard.provenance.spec import ManifestSpec

    folder = tmp_path_factory.mktemp("resolvers")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_HOME", str(tmp_path_factory.mktemp("signer_home")))
        ledger = folder / "ledger.db"
        src = folder / "art.png"
        art(320, 256, seed=0).save(src)
        with guard.Ledger(ledger) as book:
            pub = guard.sign(src, folder / "art.signed.png", ledger=book, author="Ada")
            store = book.get(pub.watermark_id).manifest
        wid = pub.watermark_id
        assert wid and store
        ca = config.identity_dir() / "ca.pem"
        other_src = folder / "other.png"
        art(320, 256, seed=7).save(other_src)
        with guard.Ledger(folder / "side.db") as side:
            other = guard.sign(other_src, folder / "other.signed.png", ledger=side, author="Eve")
            assert other.watermark_id
            other_id = side.get(other.watermark_id).manifest
            # another picture, bound to this ID by the trusted signer
            guard.publish(
                Image.open(other_src).convert("RGB"),
                folder / "lifted.png",
                ManifestSpec(author="Eve"),
                watermark_id=wid,
                ledger=side,
            )
            other_picture = side.get(wid).manifest
        mp.setenv("GUARD_HOME", str(tmp_path_factory.mktemp("stranger_home")))
        with guard.Ledger(folder / "stranger.db") as strange:
            guard.publish(
                Image.open(pub.path).convert("RGB"),
                folder / "forged.png",
                ManifestSpec(author="Mallory", training="allowed"),
                watermark_id=wid,
                ledger=strange,
            )
            untrusted = strange.get(wid).manifest
        mp.setenv("GUARD_HOME", str(tmp_path_factory.mktemp("platform_home")))
        private_key = b"a platform's own watermark key"
        private_src = folder / "private.png"
        art(320, 256, seed=11).save(private_src)
        with guard.Ledger(folder / "platform.db") as platform:
            private = guard.sign(
                private_src,
                folder / "private.signed.png",
                ledger=platform,
                author="Grace",
                watermark_key=private_key,
            )
            assert private.watermark_id
        platform_ca = folder / "platform-ca.pem"
        platform_ca.write_bytes((config.identity_dir() / "ca.pem").read_bytes())
    buf = io.BytesIO()
    Image.open(pub.path).convert("RGB").save(buf, "JPEG", quality=90)
    stripped = folder / "stripped.jpg"
    stripped.write_bytes(buf.getvalue())
    buf = io.BytesIO()
    Image.open(private.path).convert("RGB").save(buf, "JPEG", quality=90)
    private_stripped = folder / "private.jpg"
    private_stripped.write_bytes(buf.getvalue())
    # the copy attack: the mark (signed minus original) added to another picture
    marked = np.asarray(Image.open(pub.path).convert("RGB"), dtype=np.int16)
    clean = np.asarray(Image.open(src).convert("RGB"), dtype=np.int16)
    other_pixels = np.asarray(Image.open(other_src).convert("RGB"), dtype=np.int16)
    lifted = folder / "transplant.png"
    Image.fromarray(np.clip(other_pixels + marked - clean, 0, 255).astype(np.uint8)).save(lifted)
    assert other_picture and other_id and untrusted
    return World(
        ca,
        ledger,
        wid,
        str(pub.manifest_label),
        store,
        stripped,
        other_picture,
        other_id,
        untrusted,
        folder / "platform.db",
        private_key,
        platform_ca,
        private_stripped,
        lifted,
    )


@pytest.fixture(scope="module", name="world")
def world_fixture(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The session's signer world (a module may define its own `world` instead)."""
    return make_world(tmp_path_factory)


@pytest.fixture(name="loopback_only")
def loopback_only_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's HTTP clients take no proxy and no default resolvers from the environment (the
    resolver modules use it for every test: `pytestmark`)."""
    no_proxy(monkeypatch)


def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only: no proxy from the environment, no default resolvers."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GUARD_RESOLVERS", raising=False)


@contextlib.contextmanager
def guard_serve(world: World) -> Iterator[str]:
    from guard.server import ServeSettings, create_app

    with live_server(create_app(ServeSettings(ledger=world.ledger, read_only=True))) as url:
        yield url


@dataclass
class Hostile:
    """A resolver answering byBinding with `matches` (or `binding`), and every manifest with
    `manifest`; it counts the manifest requests."""

    matches: Callable[[Request], Any] | None = None
    manifest: Callable[[Request], Any] | None = None
    content: Callable[[Request, bytes], Any] | None = None  # POST /matches/byContent
    manifest_requests: int = 0
    uploads: int = 0

    def app(self, world: World) -> Starlette:
        async def by_binding(request: Request) -> Any:
            if self.matches is not None:
                answer = self.matches(request)
                return await answer if inspect.isawaitable(answer) else answer
            return JSONResponse({"matches": [{"manifestId": world.manifest_id}]})

        async def manifest(request: Request) -> Any:
            self.manifest_requests += 1
            assert self.manifest is not None
            return self.manifest(request)

        async def by_content(request: Request) -> Any:
            self.uploads += 1
            body = await request.body()
            if self.content is None:
                return JSONResponse({"matches": []})
            return self.content(request, body)

        return Starlette(
            routes=[
                Route("/matches/byBinding", by_binding),
                Route("/matches/byContent", by_content, methods=["POST"]),
                Route("/manifests/{manifestId}", manifest),
            ]
        )


def c2pa_bytes(data: bytes) -> Callable[[Request], Response]:
    return lambda request: Response(data, media_type="application/c2pa")


def verify_with(world: World, *urls: str, limits: Limits = FAST):
    from guard.verdict import verify

    return verify(world.stripped, trust_files=(world.ca,), resolvers=Resolvers(urls, limits))


def no_claims(v) -> None:
    """Nothing a resolver said reached the verdict as a claim about this file."""
    assert v.training is None and v.digital_source_type is None
    d = v.to_dict()
    assert d["training"] is None and d["digital_source_type"] is None
    if v.ledger is not None:
        assert not v.ledger.applies
        assert v.ledger.author is None and v.ledger.signer is None and v.ledger.training is None


@contextlib.contextmanager
def raw_server(answer: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """A TCP server that reads a request's head and then lets `answer` write bytes as it
    likes (what no HTTP framework would send); stopped, with its connections, on exit."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                answer(conn, stop)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
