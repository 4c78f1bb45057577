"""`guard verify --resolver`: a remote C2PA soft binding resolver is asked when the local ledger
has no record for a found mark, and trusted only for the bytes it returns.

A real `guard serve` (its ASGI app under uvicorn on 127.0.0.1) is the honest resolver; hostile
ones are tiny Starlette apps on 127.0.0.1. Every server is bounded and stopped by its test.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from serve_support import HOST, free_port, live_server

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from resolver_support import (
    FAST,
    Hostile,
    World,
    c2pa_bytes,
    guard_serve,
    no_claims,
    verify_with,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from guard.resolvers import Resolvers, from_env

pytestmark = pytest.mark.usefixtures("loopback_only")  # resolver_support


# -- the honest resolver ------------------------------------------------------------------------


def test_a_stripped_copy_finds_its_record_through_guard_serve(world: World) -> None:
    """Another GUARD_HOME (empty local ledger, the signer's CA passed with --trust): the record
    comes from guard serve, is checked here, and its claims apply."""
    from guard.cli import main

    with guard_serve(world) as url:
        result = CliRunner().invoke(
            main,
            ["verify", "--json", "--trust", str(world.ca), "--resolver", url, str(world.stripped)],
        )
    assert result.exit_code == 1, result.output  # no manifest in the file: exit codes unchanged
    (d,) = json.loads(result.stdout)
    ledger = d["ledger"]
    assert ledger["match"] and ledger["verified"] and ledger["content_match"] is True
    assert ledger["resolver"] == url and ledger["watermark_id"] == world.watermark_id
    assert ledger["author"] == "Ada" and ledger["training"] == "notAllowed"
    assert ledger["manifest"]["manifest"] == world.manifest_id
    assert d["training"] == "notAllowed" and d["digital_source_type"]
    assert d["resolvers"] == [
        {
            "url": url,
            "status": "applies",
            "manifest_id": world.manifest_id,
            "matches": 1,
            "problem": None,
            "uploaded": False,
        }
    ]


def test_without_the_signers_ca_the_record_is_unverified(world: World) -> None:
    from guard.verdict import verify

    with guard_serve(world) as url:
        v = verify(world.stripped, resolvers=Resolvers((url,), FAST))
    no_claims(v)
    assert v.ledger is None  # a record that does not verify is the resolver's answer, no match
    (answer,) = v.to_dict()["resolvers"]
    assert answer["status"] == "rejected" and "trust list" in answer["problem"]
    assert "returned a record that does not verify" in "\n".join(v.summary())


def test_guard_resolvers_env_and_the_summary(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from guard.cli import main

    dead = f"http://{HOST}:{free_port()}"
    with guard_serve(world) as url:
        monkeypatch.setenv("GUARD_RESOLVERS", f"{dead}, {url}")
        result = CliRunner().invoke(main, ["verify", "--trust", str(world.ca), str(world.stripped)])
    assert result.exit_code == 1, result.output
    assert f"record returned by the resolver {url}" in result.output
    assert "matches a record signed by" in result.output
    assert f"the resolver {dead} could not be used" in result.output


def test_an_offline_resolver_is_a_note_not_a_crash(world: World) -> None:
    from guard.cli import main

    dead = f"http://{HOST}:{free_port()}"
    result = CliRunner().invoke(
        main,
        ["verify", "--json", "--trust", str(world.ca), "--resolver", dead, str(world.stripped)],
    )
    assert result.exit_code == 1, result.output
    (d,) = json.loads(result.stdout)
    assert d["ledger"] == {"match": False}
    assert d["resolvers"][0]["status"] == "failed" and d["resolvers"][0]["problem"]
    assert any(dead in n for n in d["notes"])


def test_a_bad_resolver_url_is_a_usage_error(world: World) -> None:
    from guard.cli import main

    result = CliRunner().invoke(main, ["verify", "--resolver", "ftp://x", str(world.stripped)])
    assert result.exit_code == 2 and "http:// or https://" in result.output
    assert from_env(("http://a, https://b/api/",)) == Resolvers(("http://a", "https://b/api"))


# -- hostile resolvers ------------------------------------------------------------------------


def _drip(request: Request) -> StreamingResponse:
    async def body():
        for _ in range(50):  # at most 10 s, then the server gives up too
            yield b"x"
            await asyncio.sleep(0.2)

    return StreamingResponse(body(), media_type="application/c2pa")


def _huge(request: Request) -> StreamingResponse:
    async def body():
        chunk = b"\0" * 65536
        for _ in range(1024):  # 64 MiB at most
            yield chunk

    return StreamingResponse(body(), media_type="application/c2pa")


def _thousands(request: Request) -> JSONResponse:
    matches = [{"manifestId": f"urn:c2pa:{i:08d}", "similarityScore": 100} for i in range(5000)]
    return JSONResponse({"matches": matches})


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "untrusted",
        "other_picture",
        "other_id",
        "huge",
        "drip",
        "wrong_type",
        "thousands",
        "not_json",
        "bad_ids",
        "gzip",
        "error",
    ],
)
def test_a_hostile_resolver_lends_no_claim(world: World, case: str) -> None:
    hostile = {
        "garbage": Hostile(manifest=c2pa_bytes(b"not a manifest store " * 50)),
        "untrusted": Hostile(manifest=c2pa_bytes(world.untrusted)),
        "other_picture": Hostile(manifest=c2pa_bytes(world.other_picture)),
        "other_id": Hostile(manifest=c2pa_bytes(world.other_id)),
        "huge": Hostile(manifest=_huge),
        "drip": Hostile(manifest=_drip),
        # the real store, as text/html: the API's media type is application/c2pa
        "wrong_type": Hostile(manifest=lambda r: Response(world.store, media_type="text/html")),
        "thousands": Hostile(matches=_thousands, manifest=c2pa_bytes(b"nothing")),
        "not_json": Hostile(
            matches=lambda r: Response(b"<html>", media_type="application/json"),
            manifest=c2pa_bytes(world.store),
        ),
        "bad_ids": Hostile(
            matches=lambda r: JSONResponse(
                {"matches": [{"manifestId": "../../etc/passwd"}, {"manifestId": 7}, "x"]}
            ),
            manifest=c2pa_bytes(world.store),
        ),
        "gzip": Hostile(
            manifest=lambda r: Response(
                gzip.compress(world.store),
                media_type="application/c2pa",
                headers={"content-encoding": "gzip"},
            )
        ),
        "error": Hostile(matches=lambda r: Response(b"no", status_code=500)),
    }[case]
    started = time.monotonic()
    with live_server(hostile.app(world)) as url:
        v = verify_with(world, url)
    assert time.monotonic() - started < 30
    no_claims(v)
    (answer,) = v.resolvers
    assert answer.status != "applies" and answer.url == url
    expected = {
        "garbage": "rejected",
        "untrusted": "rejected",
        "other_picture": "not_applied",
        "other_id": "rejected",
        "huge": "failed",
        "drip": "failed",
        "wrong_type": "failed",
        "thousands": "rejected",
        "not_json": "failed",
        "bad_ids": "no_match",
        "gzip": "failed",
        "error": "failed",
    }[case]
    assert answer.status == expected, answer
    if case == "untrusted":
        assert "trust list" in (answer.problem or "")
    if case == "other_picture":
        assert v.ledger is not None and v.ledger.verified and v.ledger.content_match is False
        assert "BELONGS TO ANOTHER IMAGE" in "\n".join(v.summary())
    if case == "other_id":
        assert "different watermark ID" in (answer.problem or "")
    if case == "huge":
        assert "cut off" in (answer.problem or "")
    if case == "drip":
        assert "took over" in (answer.problem or "")
    if case == "wrong_type":
        assert "text/html" in (answer.problem or "")
    if case == "thousands":
        assert answer.matches == FAST.max_matches
        assert hostile.manifest_requests == FAST.max_matches
    if case == "bad_ids":
        assert hostile.manifest_requests == 0


def test_a_redirect_to_another_host_is_not_followed(world: World) -> None:
    """The redirect points at the honest resolver: following it would have found the record."""
    with guard_serve(world) as honest:
        hostile = Hostile(
            matches=lambda r: Response(
                status_code=302, headers={"location": f"{honest}/matches/byBinding?{r.url.query}"}
            )
        )
        with live_server(hostile.app(world)) as url:
            v = verify_with(world, url)
    no_claims(v)
    (answer,) = v.resolvers
    assert answer.status == "failed" and "not followed" in (answer.problem or "")


def test_a_forgery_does_not_stop_the_search(
    world: World,
) -> None:
    hostile = Hostile(manifest=c2pa_bytes(world.untrusted))
    with guard_serve(world) as honest, live_server(hostile.app(world)) as bad:
        v = verify_with(world, bad, honest)
    assert v.ledger is not None and v.ledger.applies and v.ledger.resolver == honest
    assert v.ledger.author == "Ada" and v.training == "notAllowed"
    # asked at once: the forgery is rejected, unless the honest answer won before it was read
    assert [a.status for a in v.resolvers] in (["rejected", "applies"], ["cancelled", "applies"])


def test_the_local_ledger_comes_first(world: World) -> None:
    """A record in the local ledger is used as it is: no resolver is asked."""
    import guard
    from guard.verdict import verify

    hostile = Hostile(manifest=c2pa_bytes(world.untrusted))
    with live_server(hostile.app(world)) as bad, guard.Ledger(world.ledger) as book:
        v = verify(
            world.stripped, trust_files=(world.ca,), ledger=book, resolvers=Resolvers((bad,), FAST)
        )
    assert v.ledger is not None and v.ledger.applies and v.ledger.resolver is None
    assert v.resolvers == [] and hostile.manifest_requests == 0


# -- guard scan ---------------------------------------------------------------------------------


def test_scan_asks_the_resolver_for_a_mark_the_ledger_lacks(world: World, tmp_path: Path) -> None:
    import guard

    data = tmp_path / "data"
    data.mkdir()
    (data / "copy.jpg").write_bytes(world.stripped.read_bytes())
    (alone,) = guard.scan([data], workers=0, trust_files=(world.ca,))
    assert alone.ledger_match is False and alone.training is None
    with guard_serve(world) as url:
        (row,) = guard.scan([data], workers=0, trust_files=(world.ca,), resolvers=(url,))
    assert row.ledger_match is True and row.content_match is True
    assert row.training == "notAllowed" and row.decision == "opted_out"


def test_scan_cli_takes_resolver(world: World, tmp_path: Path) -> None:
    from guard.cli import main

    result = CliRunner().invoke(
        main, ["scan", str(tmp_path), "--report", str(tmp_path / "r.parquet"), "--resolver", "x"]
    )
    assert result.exit_code == 2 and "http:// or https://" in result.output
