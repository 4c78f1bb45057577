"""The resolver client beyond one resolver asked once: several asked at once (the first answer
that applies wins), the on-disk cache (Cache-Control, ETag), and `--upload-to-resolver`
(POST /matches/byContent, only when asked, and said)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from serve_support import live_server

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from resolver_support import (
    FAST,
    Hostile,
    World,
    c2pa_bytes,
    guard_serve,
    no_claims,
    raw_server,
    verify_with,
)
from starlette.requests import Request
from starlette.responses import Response

from guard.resolvers import Resolvers

pytestmark = pytest.mark.usefixtures("loopback_only")  # resolver_support


@pytest.fixture(scope="module")
def honest(world: World) -> Iterator[str]:
    with guard_serve(world) as url:
        yield url


# -- several resolvers at once -----------------------------------------------------------------


def test_resolvers_are_asked_at_once_and_the_first_that_applies_wins(
    world: World, honest: str
) -> None:
    """A resolver that never answers is listed first: asked one after another, verify would
    wait for its 2 s read timeout; asked at once, the honest answer wins and the silent one is
    let go."""

    def silent(conn, stop) -> None:
        stop.wait(10)

    with raw_server(silent) as laggard:
        started = time.monotonic()
        v = verify_with(world, laggard, honest)
        spent = time.monotonic() - started
    assert v.ledger is not None and v.ledger.applies and v.ledger.resolver == honest
    assert [a.status for a in v.resolvers] == ["cancelled", "applies"]
    assert "another resolver" in (v.resolvers[0].problem or "")
    assert spent < 1.8, spent


# -- the cache ----------------------------------------------------------------------------------


class Counting:
    """A resolver that serves the real record with the given cache headers and counts what it
    is asked, and how often it answers 304."""

    def __init__(self, world: World, headers: dict[str, str]) -> None:
        self.world, self.headers = world, headers
        self.requests = 0
        self.not_modified = 0

    def _send(self, request: Request, body: bytes, media_type: str) -> Response:
        self.requests += 1
        etag = self.headers.get("ETag")
        if etag and request.headers.get("if-none-match") == etag:
            self.not_modified += 1
            return Response(status_code=304, headers=self.headers)
        return Response(body, media_type=media_type, headers=self.headers)

    def app(self):
        matches = json.dumps({"matches": [{"manifestId": self.world.manifest_id}]}).encode()
        return Hostile(
            matches=lambda r: self._send(r, matches, "application/json"),
            manifest=lambda r: self._send(r, self.world.store, "application/c2pa"),
        ).app(self.world)


@pytest.mark.parametrize(
    ("headers", "second_requests", "not_modified"),
    [
        ({"Cache-Control": "max-age=600"}, 0, 0),  # fresh: not asked again
        ({"Cache-Control": "max-age=600, no-store"}, 2, 0),  # never kept
        ({"Cache-Control": "no-cache", "ETag": '"v1"'}, 2, 2),  # asked again, 304
        ({"Cache-Control": "max-age=0", "ETag": '"v1"'}, 2, 2),  # stale at once: asked again
        ({}, 2, 0),  # no freshness, no validator: nothing to keep
    ],
    ids=["max-age", "no-store", "no-cache+etag", "stale+etag", "none"],
)
def test_the_cache_honours_cache_control_and_etag(
    world: World, headers: dict[str, str], second_requests: int, not_modified: int
) -> None:
    resolver = Counting(world, headers)
    with live_server(resolver.app()) as url:
        first = verify_with(world, url)
        asked = resolver.requests
        second = verify_with(world, url)
    assert asked == 2  # byBinding, then the manifest
    assert resolver.requests - asked == second_requests
    assert resolver.not_modified == not_modified
    for v in (first, second):  # a kept answer is judged like a fresh one, every time
        assert v.ledger is not None and v.ledger.applies and v.training == "notAllowed"


def test_a_cached_answer_stands_for_its_own_resolver_only(world: World) -> None:
    """A forgery kept from one resolver is never another resolver's answer: the key is the
    whole URL, the resolver included; and a kept forgery is still judged a forgery."""
    forger = Hostile(manifest=c2pa_bytes(world.untrusted))
    keep = {"Cache-Control": "max-age=600"}
    forger.manifest = lambda r: Response(
        world.untrusted, media_type="application/c2pa", headers=keep
    )
    with live_server(forger.app(world)) as bad, live_server(Counting(world, keep).app()) as good:
        assert verify_with(world, bad).resolvers[0].status == "rejected"
        again = verify_with(world, bad)
        assert again.resolvers[0].status == "rejected" and forger.manifest_requests == 1
        no_claims(again)
        v = verify_with(world, good)
    assert v.ledger is not None and v.ledger.applies


def test_guard_serve_answers_with_cache_headers_and_304(world: World, honest: str) -> None:
    import httpx

    value = "value=" + __import__("base64").b64encode(bytes.fromhex(world.watermark_id)).decode()
    alg = "org.guard.watermark.v2"
    with httpx.Client() as c:
        hit = c.get(f"{honest}/matches/byBinding?alg={alg}&{value}")
        store = c.get(f"{honest}/manifests/{world.manifest_id}")
        again = c.get(
            f"{honest}/manifests/{world.manifest_id}",
            headers={"If-None-Match": store.headers["etag"]},
        )
    assert hit.headers["cache-control"] == "max-age=300" and hit.headers["etag"]
    assert store.content == world.store and store.headers["cache-control"] == "max-age=86400"
    assert again.status_code == 304 and again.content == b""


# -- --upload-to-resolver -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def platform(world: World) -> Iterator[str]:
    """A platform's guard serve: it marks under a private key, so only it reads its marks."""
    from guard.server import ServeSettings, create_app

    settings = ServeSettings(
        ledger=world.private_ledger,
        read_only=True,
        watermark_key=world.private_key,
        trust_files=(world.platform_ca,),  # its own CA (its GUARD_HOME's, in real life)
    )
    with live_server(create_app(settings)) as url:
        yield url


def test_a_private_mark_is_found_only_with_the_upload(world: World, platform: str) -> None:
    from guard.cli import main

    args = ["verify", "--json", "--trust", str(world.platform_ca), "--resolver", platform]
    (quiet,) = json.loads(CliRunner().invoke(main, [*args, str(world.private_stripped)]).stdout)
    assert quiet["watermark"]["found"] is False  # guard's public key reads nothing here
    assert quiet["ledger"] == {"match": False} and quiet["resolvers"] == []  # nothing sent

    result = CliRunner().invoke(main, [*args, "--upload-to-resolver", str(world.private_stripped)])
    assert result.exit_code == 1, result.output
    (d,) = json.loads(result.stdout)
    assert d["ledger"]["binding"] == "content" and d["ledger"]["resolver"] == platform
    assert d["ledger"]["content_match"] is True and d["ledger"]["author"] == "Grace"
    assert d["training"] == "notAllowed"
    (answer,) = d["resolvers"]
    assert answer["status"] == "applies" and answer["uploaded"] is True
    assert f"this file was uploaded to {platform} (--upload-to-resolver)" in d["notes"]

    words = CliRunner().invoke(
        main, ["verify", *args[2:], "--upload-to-resolver", str(world.private_stripped)]
    )
    assert f"uploaded to {platform}" in words.output
    assert (
        "matches a record signed by" in words.output and "by the picture's content" in words.output
    )


def test_nothing_is_uploaded_without_the_flag(world: World) -> None:
    hostile = Hostile(manifest=c2pa_bytes(world.store))
    from guard.verdict import verify

    with live_server(hostile.app(world)) as url:
        for path in (world.stripped, world.private_stripped):
            v = verify(path, trust_files=(world.ca,), resolvers=Resolvers((url,), FAST))
            assert not any(a.uploaded for a in v.resolvers)
    assert hostile.uploads == 0


def test_upload_needs_a_resolver(world: World) -> None:
    from guard.cli import main

    for command in ("verify", "scan"):
        extra = (
            ["--report", str(world.stripped.with_suffix(".parquet"))] if command == "scan" else []
        )
        result = CliRunner().invoke(
            main, [command, "--upload-to-resolver", *extra, str(world.stripped)]
        )
        assert result.exit_code == 2 and "--upload-to-resolver needs a resolver" in result.output


def test_what_a_response_lets_a_cache_do(tmp_path) -> None:
    from guard.resolvers.cache import MAX_AGE_S, Cache, Policy, policy

    assert policy({"cache-control": "max-age=60", "age": "15"}) == Policy(True, 45.0, None)
    assert policy({"cache-control": "max-age=99999999"}).max_age == MAX_AGE_S  # a day at most
    assert policy({"cache-control": "no-cache, max-age=60", "etag": '"x"'}) == Policy(
        True, None, '"x"'
    )
    assert not policy({"cache-control": "no-store", "etag": '"x"'}).store
    assert not policy({"etag": "\x00bad"}).store  # an ETag that cannot be sent back: none
    shared = {"cache-control": "private, max-age=60"}
    assert policy(shared).store and not policy(shared, shared=True).store
    both = {"cache-control": "max-age=60, s-maxage=5"}
    assert policy(both).max_age == 60 and policy(both, shared=True).max_age == 5
    cache = Cache(tmp_path)
    cache.put("k", b"body", Policy(True, 60.0, None))
    entry = cache.get("k")
    assert entry is not None and entry.body == b"body" and entry.fresh
    (kept,) = tmp_path.iterdir()
    kept.write_bytes(b'{"key": "k", "size": 4}\nbody')  # damaged: no time it was stored
    assert cache.get("k") is None
    kept.write_bytes(b"not json\nbody")
    assert cache.get("k") is None
