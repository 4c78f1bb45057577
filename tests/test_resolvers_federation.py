"""`guard serve --upstream`: a resolver that asks other resolvers for what its ledger lacks
(issue 18 §2), end to end with real processes on 127.0.0.1.

Server A is the signer's `guard serve` over its ledger; server B is `guard serve --read-only
--upstream-only --upstream A` (a public resolver in front of a private ledger). A client with
none of the signer's state asks B alone and gets A's record, checked on its own side; a
transplanted mark and a hostile upstream lend nothing; cycles and hops are bounded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from serve_support import HOST, entered, free_port, live_server, serve_process

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

import httpx
from resolver_support import (
    Hostile,
    World,
    c2pa_bytes,
)
from starlette.requests import Request
from starlette.responses import JSONResponse

from guard.resolvers.client import PATH_HEADER

pytestmark = pytest.mark.usefixtures("loopback_only")  # resolver_support

ALG = "org.guard.watermark.v2"


@pytest.fixture(scope="module")
def a_and_b(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A and B started at once: B is told A's port, and asks nothing of A until it is asked."""
    a_port = free_port()
    a_home, b_home = tmp_path_factory.mktemp("a_home"), tmp_path_factory.mktemp("b_home")
    # B trusts the signer's CA only for byContent, which answers with records whose claims
    # apply to the upload; byBinding and /manifests pass A's answers on unjudged
    upstream = f"http://{HOST}:{a_port}"
    b_args = ["--read-only", "--upstream-only", "--upstream", upstream, "--trust", str(world.ca)]
    with contextlib.ExitStack() as stack:
        a, b = entered(
            stack,
            serve_process(a_home, "--read-only", "--ledger", str(world.ledger), port=a_port),
            serve_process(b_home, *b_args),
        )
        assert a == upstream
        yield a, b


def verify_json(world: World, path: Path, *resolvers: str) -> dict:
    from guard.cli import main

    args = ["verify", "--json", "--trust", str(world.ca)]
    for url in resolvers:
        args += ["--resolver", url]
    result = CliRunner().invoke(main, [*args, str(path)])
    assert result.exit_code == 1, result.output  # no manifest in the file: exit codes unchanged
    (d,) = json.loads(result.stdout)
    return d


def test_a_client_gets_the_signers_record_through_b(world: World, a_and_b: tuple[str, str]) -> None:
    """The client asks B only; B has no ledger and asks A; the client checks the store itself:
    trust anchors, the binding to this ID, and this picture against the store's picture."""
    _, b = a_and_b
    d = verify_json(world, world.stripped, b)
    ledger = d["ledger"]
    assert ledger["match"] and ledger["verified"] and ledger["content_match"] is True
    assert ledger["resolver"] == b and ledger["watermark_id"] == world.watermark_id
    assert ledger["author"] == "Ada" and d["training"] == "notAllowed"
    assert d["resolvers"][0]["status"] == "applies"
    # B re-serves A's store as the bytes A served, and says nobody may keep it longer than A
    value = base64.b64encode(bytes.fromhex(world.watermark_id)).decode()
    got = httpx.get(f"{b}/matches/byBinding", params={"alg": ALG, "value": value})
    assert got.json() == {"matches": [{"manifestId": world.manifest_id, "similarityScore": 100}]}
    assert got.headers["cache-control"] == "no-cache"
    store = httpx.get(f"{b}/manifests/{world.manifest_id}")
    assert store.content == world.store and store.headers["content-type"] == "application/c2pa"


def test_a_transplanted_mark_gets_no_claims_through_b(
    world: World, a_and_b: tuple[str, str]
) -> None:
    _, b = a_and_b
    d = verify_json(world, world.lifted, b)
    assert d["ledger"]["verified"] and d["ledger"]["content_match"] is False
    assert d["training"] is None and d["ledger"]["author"] is None
    assert d["resolvers"][0]["status"] == "not_applied"


def test_by_content_is_federated_by_the_marks_id(world: World, a_and_b: tuple[str, str]) -> None:
    """B reads the mark from the upload and asks A by its ID: the picture never leaves B."""
    _, b = a_and_b
    got = httpx.post(
        f"{b}/matches/byContent",
        content=world.stripped.read_bytes(),
        headers={"content-type": "image/jpeg"},
        timeout=60,
    )
    assert got.status_code == 200, got.text
    (match,) = got.json()["matches"]
    assert match["manifestId"] == world.manifest_id


def test_a_hostile_upstream_lends_no_claim(world: World, tmp_path: Path) -> None:
    """B passes on what its upstream said, and the client judges it: a forgery is rejected."""
    from guard.server import ServeSettings, create_app

    forger = Hostile(manifest=c2pa_bytes(world.untrusted))
    with live_server(forger.app(world)) as bad:
        settings = ServeSettings(
            read_only=True, upstream_only=True, upstreams=(bad,), cache_dir=tmp_path
        )
        with live_server(create_app(settings)) as b:
            d = verify_json(world, world.stripped, b)
    assert d["ledger"] == {"match": False} and d["training"] is None
    (answer,) = d["resolvers"]
    assert answer["status"] == "rejected" and "trust list" in answer["problem"]


class Recorder:
    """An upstream that records the path header of every query it is sent."""

    def __init__(self, world: World) -> None:
        self.paths: list[str | None] = []
        self.world = world

    def app(self):
        def matches(request: Request) -> JSONResponse:
            self.paths.append(request.headers.get(PATH_HEADER))
            return JSONResponse({"matches": []})

        return Hostile(matches=matches).app(self.world)


def test_loops_and_hops_are_bounded(world: World, tmp_path: Path) -> None:
    from guard.server import ServeSettings, create_app

    value = base64.b64encode(bytes.fromhex("00" * 8)).decode()
    query = {"alg": ALG, "value": value}
    recorder = Recorder(world)
    with live_server(recorder.app()) as upstream:
        settings = ServeSettings(
            read_only=True,
            upstream_only=True,
            upstreams=(upstream,),
            max_hops=3,
            cache_dir=tmp_path,
        )
        app = create_app(settings)
        node = app.state.federation.node
        with live_server(app) as b:
            asked = lambda path: httpx.get(  # noqa: E731
                f"{b}/matches/byBinding", params=query, headers={PATH_HEADER: path} if path else {}
            )
            assert asked(None).json() == {"matches": []}
            assert recorder.paths == [node]  # forwarded, with its own ID on the path
            other = "0123456789abcdef"
            asked(f"{other}, {node}")  # a cycle: this server is on the path already
            asked(f"{other}, 1111111111111111, 2222222222222222")  # 3 hops already
            asked("not a node id")  # malformed: not forwarded either
            assert recorder.paths == [node]
            asked(other)
            assert recorder.paths == [node, f"{other}, {node}"]


def test_two_servers_that_name_each_other_stop(world: World, tmp_path: Path) -> None:
    """A cycle: C's upstream is D and D's is C. A query neither knows goes round once and ends
    with an empty answer, fast, instead of bouncing until something times out."""
    from guard.server import ServeSettings, create_app

    c_port, d_port = free_port(), free_port()
    c_url, d_url = f"http://{HOST}:{c_port}", f"http://{HOST}:{d_port}"

    def app(upstream: str, name: str):
        return create_app(
            ServeSettings(
                read_only=True,
                upstream_only=True,
                upstreams=(upstream,),
                cache_dir=tmp_path / name,
            )
        )

    c_app, d_app = app(d_url, "c"), app(c_url, "d")
    value = base64.b64encode(bytes.fromhex("00" * 8)).decode()
    with live_server(c_app, c_port), live_server(d_app, d_port):
        started = time.monotonic()
        got = httpx.get(f"{c_url}/matches/byBinding", params={"alg": ALG, "value": value})
        assert got.status_code == 200 and got.json() == {"matches": []}
        missing = httpx.get(f"{c_url}/manifests/urn:c2pa:no-such-manifest")
        assert missing.status_code == 404
    assert time.monotonic() - started < 3


def test_serve_refuses_what_does_not_fit_together(tmp_path: Path) -> None:
    from guard.cli import main

    for args, words in (
        (["--upstream-only", "--upstream", "http://127.0.0.1:9"], "add --read-only"),
        (["--upstream-only", "--read-only"], "needs at least one --upstream"),
        (["--upstream", "ftp://x", "--read-only", "--ledger", str(tmp_path / "l.db")], "http://"),
    ):
        result = CliRunner().invoke(main, ["serve", *args])
        assert result.exit_code == 2 and words in result.output, result.output
