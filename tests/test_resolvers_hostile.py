"""A resolver is an adversary too (issue 18 §4): hostile resolvers on 127.0.0.1 that none of may
lend a claim, hang the client, or fill its memory. The cases test_resolvers.py does not have:
a drip of the status line and headers, an endless body, a redirect loop, a match list of
millions, wrong media types on the match list, a tampered store, a resolver that spends its
whole budget one manifest at a time, and hostile byContent answers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from serve_support import live_server

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from resolver_support import (
    FAST,
    Hostile,
    World,
    c2pa_bytes,
    no_claims,
    raw_server,
    verify_with,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from guard.resolvers import Limits, Resolvers

pytestmark = pytest.mark.usefixtures("loopback_only")  # resolver_support


QUICK = Limits(connect_s=2.0, read_s=2.0, total_s=0.5, budget_s=10.0)


def _header_drip(conn: socket.socket, stop: threading.Event) -> None:
    """A status line, then one header line every 0.3 s for 12 s: each read is far inside the
    read timeout, so only a deadline on the whole response ends it."""
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for i in range(40):
        if stop.wait(0.3):
            return
        conn.sendall(b"X-Drip-%d: x\r\n" % i)


def _status_drip(conn: socket.socket, stop: threading.Event) -> None:
    for byte in b"HTTP/1.1 200 OK\r\n":
        if stop.wait(0.3):
            return
        conn.sendall(bytes([byte]))


@pytest.mark.parametrize("drip", [_header_drip, _status_drip], ids=["headers", "status_line"])
def test_a_slow_drip_of_headers_is_cut_off_by_the_deadline(world: World, drip) -> None:
    """The known gap: the deadline counted only while the body was read, so a resolver that
    dripped its headers held verify for as long as it liked (12 s here, forever in truth)."""
    with raw_server(drip) as url:
        started = time.monotonic()
        v = verify_with(world, url, limits=QUICK)
        spent = time.monotonic() - started
    no_claims(v)
    (answer,) = v.resolvers
    assert answer.status == "failed" and "took over 0.5 s" in (answer.problem or ""), answer
    assert spent < 3, spent


def _endless(request: Request) -> StreamingResponse:
    async def body():
        chunk = b"\0" * 65536
        while True:  # never ends: only the client's size cap does
            yield chunk
            await asyncio.sleep(0)

    return StreamingResponse(body(), media_type="application/c2pa")


def _endless_matches(request: Request) -> StreamingResponse:
    async def body():
        yield b'{"matches": ['
        while True:
            yield b'{"manifestId": "urn:c2pa:00000000-0000-0000-0000-000000000000"},' * 1000
            await asyncio.sleep(0)

    return StreamingResponse(body(), media_type="application/json")


def _millions(request: Request) -> Response:
    ids = b",".join(b'{"manifestId":"urn:c2pa:%08d"}' % i for i in range(100_000))
    return Response(b'{"matches":[' + ids + b"]}", media_type="application/json")


def _tampered(store: bytes) -> bytes:
    """The real store with bytes in its middle changed: its signature no longer holds."""
    middle = len(store) // 2
    return (
        store[:middle] + bytes(b ^ 0x55 for b in store[middle : middle + 64]) + store[middle + 64 :]
    )


def _redirect_loop(request: Request) -> Response:
    return Response(status_code=307, headers={"location": str(request.url)})


CASES = {
    # (hostile, expected status, words in its problem)
    "endless_store": (lambda w: Hostile(manifest=_endless), "failed", "ran over"),
    "endless_matches": (lambda w: Hostile(matches=_endless_matches), "failed", "ran over"),
    "millions_of_matches": (lambda w: Hostile(matches=_millions), "failed", "over 1048576"),
    "redirect_loop": (lambda w: Hostile(matches=_redirect_loop), "failed", "not followed"),
    "manifest_redirect": (
        lambda w: Hostile(manifest=_redirect_loop),
        "failed",
        "not followed",
    ),
    "matches_as_html": (
        lambda w: Hostile(
            matches=lambda r: Response(
                b'{"matches": [{"manifestId": "%s"}]}' % w.manifest_id.encode(),
                media_type="text/html",
            ),
            manifest=c2pa_bytes(w.store),
        ),
        "failed",
        "text/html",
    ),
    "matches_without_type": (
        lambda w: Hostile(
            matches=lambda r: Response(
                b'{"matches": [{"manifestId": "%s"}]}' % w.manifest_id.encode(),
                headers={"content-type": ""},
            ),
            manifest=c2pa_bytes(w.store),
        ),
        "failed",
        "no content type",
    ),
    "store_as_json": (
        lambda w: Hostile(manifest=lambda r: Response(w.store, media_type="application/json")),
        "failed",
        "application/json",
    ),
    "tampered_store": (
        lambda w: Hostile(manifest=c2pa_bytes(_tampered(w.store))),
        "rejected",
        "",
    ),
}


@pytest.fixture(scope="module")
def hostiles(world: World) -> Iterator[tuple[str, dict[str, Hostile]]]:
    """One server for every case of CASES, each under its own path prefix (a resolver URL may
    have one): {url}/{case}/matches/byBinding, and so on."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    each = {case: make(world) for case, (make, _, _) in CASES.items()}
    app = Starlette(routes=[Mount(f"/{case}", app=h.app(world)) for case, h in each.items()])
    with live_server(app) as url:
        yield url, each


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_resolver_lends_no_claim(
    world: World, hostiles: tuple[str, dict[str, Hostile]], case: str
) -> None:
    _, status, words = CASES[case]
    server, each = hostiles
    url = f"{server}/{case}"
    started = time.monotonic()
    v = verify_with(world, url)
    assert time.monotonic() - started < 10
    no_claims(v)
    (answer,) = v.resolvers
    assert answer.status == status and words in (answer.problem or ""), answer
    if case == "millions_of_matches":
        assert each[case].manifest_requests == 0


def test_a_resolver_cannot_spend_more_than_its_budget(world: World) -> None:
    """Five manifests that each drip until the 0.8 s deadline of one answer: 4 s, without the
    budget for all of one resolver's requests (1 s here)."""

    def matches(request: Request) -> JSONResponse:
        return JSONResponse({"matches": [{"manifestId": f"urn:c2pa:{i}"} for i in range(5)]})

    def drip(request: Request) -> StreamingResponse:
        async def body():
            for _ in range(100):
                yield b"x"
                await asyncio.sleep(0.2)

        return StreamingResponse(body(), media_type="application/c2pa")

    limits = Limits(connect_s=2.0, read_s=2.0, total_s=0.8, budget_s=1.0)
    with live_server(Hostile(matches=matches, manifest=drip).app(world)) as url:
        started = time.monotonic()
        v = verify_with(world, url, limits=limits)
        spent = time.monotonic() - started
    no_claims(v)
    (answer,) = v.resolvers
    assert answer.status == "failed" and answer.matches == 5
    assert "used up the 1 s" in (answer.problem or ""), answer
    assert spent < 3, spent


def test_a_hostile_by_content_answer_lends_no_claim(world: World) -> None:
    """With the upload allowed, a resolver that answers byContent with a store for another
    picture, or with a forgery: no claim; and the verdict says the picture was sent."""
    seen: list[tuple[str, bytes]] = []

    def by_content(request: Request, body: bytes) -> JSONResponse:
        seen.append((request.headers.get("content-type", ""), body))
        return JSONResponse({"matches": [{"manifestId": "urn:c2pa:other"}]})

    def manifest(request: Request) -> Response:
        other = request.path_params["manifestId"] == "urn:c2pa:other"
        return Response(
            world.other_picture if other else world.untrusted, media_type="application/c2pa"
        )

    hostile = Hostile(manifest=manifest, content=by_content)
    from guard.verdict import verify

    with live_server(hostile.app(world)) as url:
        v = verify(
            world.stripped, trust_files=(world.ca,), resolvers=Resolvers((url,), FAST, upload=True)
        )
    no_claims(v)
    (answer,) = v.resolvers
    assert answer.uploaded and seen == [("image/jpeg", world.stripped.read_bytes())]
    assert answer.status == "not_applied"  # the other picture's store verifies; not this one's
    assert any(f"uploaded to {url}" in n for n in v.notes)
