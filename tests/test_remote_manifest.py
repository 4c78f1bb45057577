"""A file whose only Content Credentials are a remote manifest store (XMP dcterms:provenance, or a
recorded `Link: <URL>; rel="c2pa-manifest"` header): verify says where it is and that it was not
fetched; with `--fetch-remote` the resolvers' bounded client fetches it and it is validated
against the file. Every server is a loopback http.server in a thread: no test reaches the network.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import art

import guard
from guard.cli import main

pytest.importorskip("httpx")

from guard.resolvers import Limits

C2PA_RS = Path(__file__).parent / "fixtures" / "c2pa-rs"  # the SDK's own test files (README)
FAST = Limits(connect_s=1.0, read_s=1.0, total_s=1.0, max_manifest_bytes=256 * 1024)
C2PA = "application/c2pa"


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    routes: dict[str, Callable[[http.server.BaseHTTPRequestHandler], None]]
    requests: list[str]


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path.split("?")[0])
        if route is None:
            self.send_error(404)
            return
        with contextlib.suppress(OSError):  # the client hung up (a cut-off body)
            route(self)

    def log_message(self, format: str, *args: object) -> None:
        pass


def body(
    data: bytes, media_type: str = C2PA
) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    def send(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", media_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return send


def endless(h: http.server.BaseHTTPRequestHandler) -> None:
    """No length, and far more bytes than any cap."""
    h.send_response(200)
    h.send_header("Content-Type", C2PA)
    h.end_headers()
    for _ in range(256):
        h.wfile.write(b"\0" * 65536)


def drip(h: http.server.BaseHTTPRequestHandler) -> None:
    """A byte every 0.2 s: each read is quick, the whole body never ends."""
    h.send_response(200)
    h.send_header("Content-Type", C2PA)
    h.send_header("Content-Length", "1000")
    h.end_headers()
    for _ in range(50):
        h.wfile.write(b"\0")
        h.wfile.flush()
        time.sleep(0.2)


def redirect(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(302)
    h.send_header("Location", "http://elsewhere.invalid/linked.c2pa")
    h.send_header("Content-Length", "0")
    h.end_headers()


@dataclass
class World:
    base: str  # the loopback server's URL
    server: Server
    ca: Path  # the signer's CA (--trust)
    pointing: Path  # signed, its store left out, its XMP naming {base}/pointing.c2pa
    linked: Path  # guard-signed, its store left out (served as {base}/linked.c2pa), no reference
    bare: Path  # signed like `pointing` but naming no URL, no XMP of its own ({base}/bare.c2pa)


def _sign_apart(png: bytes, url: str | None) -> tuple[bytes, bytes]:
    """A PNG signed as C2PA's "remote manifest" workflow makes one: the store is not embedded
    and the asset's XMP names `url` (c2pa-python's Builder.set_remote_url), hashed with it;
    with no `url`, nothing in the file says where its store is."""
    import c2pa

    from guard.identity import Identity
    from guard.provenance import c2pa_io, manifest
    from guard.provenance.spec import ManifestSpec

    definition = manifest.build(
        ManifestSpec(author="Ada"), title="pointing.png", mime="image/png", thumbnail=False
    )
    signer = Identity.default().c2pa_signer()
    try:
        with c2pa_io._context() as ctx, c2pa.Builder(definition, context=ctx) as builder:
            builder.set_no_embed()
            if url is not None:
                builder.set_remote_url(url)
            out = io.BytesIO()
            store = builder.sign(signer, "image/png", io.BytesIO(png), out)
    finally:
        signer.close()
    return out.getvalue(), store


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from guard import config
    from guard.identity.local_ca import init_local

    folder = tmp_path_factory.mktemp("remote")
    server = Server(("127.0.0.1", 0), Handler)
    server.routes, server.requests = {}, []
    base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_HOME", str(tmp_path_factory.mktemp("signer_home")))
        init_local(name="Ada", org="Studio")
        ca = config.identity_dir() / "ca.pem"
        png = io.BytesIO()
        art(128, 96, seed=1).save(png, "PNG")
        pointing_bytes, pointing_store = _sign_apart(png.getvalue(), f"{base}/pointing.c2pa")
        pointing = folder / "pointing.png"
        pointing.write_bytes(pointing_bytes)
        bare_bytes, bare_store = _sign_apart(png.getvalue(), None)
        (folder / "bare.png").write_bytes(bare_bytes)
        stores = {}
        for name, seed in (("linked", 2), ("other", 3)):
            art(128, 96, seed=seed).save(folder / f"{name}.png")
            pub = guard.sign(
                folder / f"{name}.png",
                folder / f"{name}.signed.png",
                sidecar=True,
                watermark=False,
                author="Ada",
            )
            assert pub.sidecar_path is not None
            stores[name] = pub.sidecar_path.read_bytes()
            pub.sidecar_path.unlink()  # the store is only on the server now
    server.routes = {
        "/pointing.c2pa": body(pointing_store),
        "/bare.c2pa": body(bare_store),
        "/linked.c2pa": body(stores["linked"]),
        "/other.c2pa": body(stores["other"]),  # a valid store of another picture
        "/cloud.c2pa": body((C2PA_RS / "cloud_manifest.c2pa").read_bytes()),
        "/garbage.c2pa": body(b"not a manifest store at all" * 10),
        "/html": body(stores["linked"], "text/html"),
        "/endless": endless,
        "/drip": drip,
        "/redirect": redirect,
    }
    try:
        yield World(base, server, ca, pointing, folder / "linked.signed.png", folder / "bare.png")
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


def run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout


def no_claims(v: guard.Verdict) -> None:
    """No claim of a fetched store reached the verdict: only the file's own (unsigned) XMP."""
    assert not v.ok
    assert v.training == v.xmp.training and v.digital_source_type == v.xmp.digital_source_type
    assert v.c2pa.signer is None or v.state == "invalid"


def linked(
    world: World, link: str, *, trusted: bool = False, name: str = "linked.png"
) -> guard.Verdict:
    """The linked file's verdict with its store at `link` fetched, under the test CA if trusted."""
    return guard.verify_bytes(
        world.linked.read_bytes(),
        name=name,
        watermark=False,
        trust_files=(world.ca,) if trusted else (),
        fetch_remote=FAST,
        remote_link=link,
    )


# -- not fetched ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "url"),
    [
        (
            "cloud.jpg",
            "https://cai-manifests.adobe.com/manifests/adobe-urn-uuid-5f37e182-3687-462e-a7fb-573462780391",
        ),
        (
            "cloudx.jpg",
            "https://cai-manifestx.adobe.com/manifests/adobe-urn-uuid-5f37e182-3687-462e-a7fb-573462780391",
        ),
        ("libpng-test_with_url.png", "http://localhost:5000/libpng-test.c2pa"),
    ],
)
def test_c2pa_rs_remote_manifest_files_are_remote_not_fetched_not_damaged(
    name: str, url: str
) -> None:
    """c2pa-rs's own files with only a remote store: guard once called them `invalid`,
    guard.manifest.damaged. Nothing is damaged: the store is elsewhere and was not fetched."""
    v = guard.verify(C2PA_RS / name, watermark=False)
    assert v.state == "remote" and not v.ok
    assert v.c2pa.failures == []
    assert v.c2pa.remote is not None
    assert (v.c2pa.remote.url, v.c2pa.remote.source, v.c2pa.remote.status) == (
        url,
        "xmp",
        "not_fetched",
    )
    assert f"REMOTE — remote manifest at {url}, not fetched" in v.summary()[0]

    exit_code, out = run("verify", C2PA_RS / name, "--no-watermark", "--json")
    assert exit_code == 1  # no verifiable provenance, as for a file without credentials
    c2pa = json.loads(out)[0]["c2pa"]
    assert c2pa["state"] == "remote" and c2pa["failures"] == []
    assert c2pa["remote"] == {"url": url, "source": "xmp", "status": "not_fetched", "problem": None}
    assert "damaged" not in out


def test_without_fetch_remote_nothing_is_asked(world: World) -> None:
    before = len(world.server.requests)
    exit_code, out = run("verify", world.pointing, "--no-watermark", "--trust", world.ca, "--json")
    assert exit_code == 1
    d = json.loads(out)[0]
    assert d["c2pa"]["state"] == "remote" and d["training"] is None
    assert d["c2pa"]["remote"]["url"] == f"{world.base}/pointing.c2pa"
    assert len(world.server.requests) == before


# -- fetched -------------------------------------------------------------------------------------


def test_fetch_remote_validates_the_store_the_file_points_to(world: World) -> None:
    exit_code, out = run(
        "verify", world.pointing, "--no-watermark", "--trust", world.ca, "--fetch-remote", "--json"
    )
    assert exit_code == 0, out
    d = json.loads(out)[0]
    c2pa = d["c2pa"]
    assert c2pa["state"] == "trusted" and c2pa["failures"] == []
    assert c2pa["remote"]["status"] == "fetched" and c2pa["sidecar"] is False
    assert c2pa["author"] == "Ada" and d["training"] == "notAllowed"
    exit_code, out = run("verify", world.pointing, "--no-watermark", "--fetch-remote")
    assert exit_code == 0 and f"manifest store: fetched from {world.base}/pointing.c2pa" in out
    assert "VALID" in out  # no --trust: the signer is not in the trust list, as for embedded stores


def test_a_link_header_names_the_store(world: World) -> None:
    v = linked(world, f"{world.base}/linked.c2pa", trusted=True)
    assert v.state == "trusted" and v.training == "notAllowed"
    assert v.c2pa.remote is not None and v.c2pa.remote.source == "link"


def test_the_urls_own_query_is_kept(world: World) -> None:
    v = linked(world, f"{world.base}/linked.c2pa?v=2&sig=a%2Fb")
    assert v.state == "valid"
    assert world.server.requests[-1] == "/linked.c2pa?v=2&sig=a%2Fb"


@pytest.mark.parametrize("route", ["/other.c2pa", "/pointing.c2pa"])
def test_a_store_of_another_file_is_invalid_never_trusted(world: World, route: str) -> None:
    v = linked(world, world.base + route, trusted=True)
    assert v.state == "invalid"
    assert "assertion.dataHash.mismatch" in [f.code for f in v.c2pa.failures]
    no_claims(v)


def test_c2pa_rs_cloud_store_binds_to_cloud_jpg_only(world: World) -> None:
    """c2pa-rs's cloud_manifest.c2pa, served here in place of Adobe's server: valid against
    cloud.jpg (C2PA's test signer, untrusted), invalid against cloudx.jpg, whose bytes differ."""
    from guard.provenance import c2pa_io, remote, remote_fetch

    def fetched(name: str):
        data = (C2PA_RS / name).read_bytes()
        report = c2pa_io.read(data, "image/jpeg", trust_pem=None)
        assert report.state == "remote" and report.remote is not None
        report.remote = remote.reference(f"{world.base}/cloud.c2pa", "xmp")  # loopback, not Adobe
        return remote_fetch.follow(report, data, "image/jpeg", trust_pem=None, fetch=FAST)

    cloud = fetched("cloud.jpg")
    assert cloud.state == "valid"
    assert [f.code for f in cloud.failures] == ["signingCredential.untrusted"]
    cloudx = fetched("cloudx.jpg")
    assert cloudx.state == "invalid"
    assert "assertion.dataHash.mismatch" in [f.code for f in cloudx.failures]


# -- hostile servers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "words"),
    [
        ("/endless", "ran over 262144 bytes"),
        ("/drip", "took over 1 s"),
        ("/redirect", "a redirect to http://elsewhere.invalid/linked.c2pa; not followed"),
        ("/html", "answered text/html, not application/c2pa"),
        ("/missing.c2pa", "answered HTTP 404"),
    ],
)
def test_a_hostile_server_gives_a_note_and_no_claims(world: World, route: str, words: str) -> None:
    url = world.base + route
    started = time.monotonic()
    v = linked(world, url, trusted=True)
    assert time.monotonic() - started < 3
    assert v.state == "remote" and v.c2pa.remote is not None
    assert v.c2pa.remote.status == "failed" and words in (v.c2pa.remote.problem or "")
    assert any(n.startswith(f"the remote manifest at {url} could not be fetched") for n in v.notes)
    no_claims(v)
    assert "could not be fetched" in v.summary()[0]


def test_bytes_that_are_no_store_are_a_damaged_store(world: World) -> None:
    v = linked(world, f"{world.base}/garbage.c2pa")
    assert v.state == "invalid"
    assert [f.code for f in v.c2pa.failures] == ["guard.manifest.damaged"]
    no_claims(v)


@pytest.mark.parametrize(
    ("link", "why"),
    [
        ("file:///etc/passwd", "not http:// or https://"),
        ("javascript:alert(1)", "not http:// or https://"),
        ("https://a.example/\x1b[2J\x1b[31mTRUSTED", "control characters"),
        ("https://a.example/\nTRUSTED", "control characters"),
        ("https://a.example/" + "a" * 5000, "5018 characters long"),
        ("https://cai-manifests.adobe.com@evil.example/m", "user name"),
        ("https://[::1/m", "malformed"),
    ],
)
def test_a_crafted_url_is_refused_and_not_shown(world: World, link: str, why: str) -> None:
    before = len(world.server.requests)
    v = linked(world, link, name="x.png")
    assert v.state == "remote" and v.c2pa.remote is not None
    assert v.c2pa.remote.status == "refused" and v.c2pa.remote.url is None
    assert why in (v.c2pa.remote.problem or "")
    text = "\n".join(v.summary()) + json.dumps(v.to_dict())
    assert link not in text and "\x1b" not in text and "TRUSTED" not in text
    assert len(world.server.requests) == before


def test_an_xml_escape_in_the_files_url_is_read_as_what_it_says() -> None:
    """c2pa-rs hands on dcterms:provenance as XML spells it; `&#10;` is a newline: refused."""
    from guard.provenance import xmp

    png = io.BytesIO()
    art(64, 64).save(png, "PNG")
    packet = (
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        'rdf:about="" xmlns:dcterms="http://purl.org/dc/terms/" '
        'dcterms:provenance="https://a.example/m?x=1&amp;y=2&#10;TRUSTED"/></rdf:RDF>'
        '</x:xmpmeta><?xpacket end="w"?>'
    )
    v = guard.verify_bytes(
        xmp.embed(png.getvalue(), packet.encode()), name="x.png", watermark=False
    )
    assert v.state == "remote" and v.c2pa.remote is not None
    assert v.c2pa.remote.status == "refused" and "control characters" in (
        v.c2pa.remote.problem or ""
    )
    assert "TRUSTED" not in "\n".join(v.summary())


def test_link_header_grammar() -> None:
    from guard.provenance.remote import link_target

    rel = 'rel="c2pa-manifest"'
    assert link_target([f"<https://a.example/m.c2pa>; {rel}"]) == "https://a.example/m.c2pa"
    assert (
        link_target(
            ['<https://a.example/>; rel="canonical", <https://b.example/m>; rel="x c2pa-manifest"']
        )
        == "https://b.example/m"
    )
    assert link_target(["<https://a.example/m>; rel=C2PA-Manifest"]) == "https://a.example/m"
    assert link_target([f"</m/1.c2pa>; {rel}"], base="https://cdn.example/img/1.jpg") == (
        "https://cdn.example/m/1.c2pa"
    )
    assert link_target(['<https://a.example/m>; rel="canonical"']) is None
    assert link_target([]) is None


# -- scan ----------------------------------------------------------------------------------------


def test_scan_cannot_read_the_opt_out_of_a_store_it_did_not_fetch(
    world: World, tmp_path: Path
) -> None:
    """No policy allows a sample whose only credentials are a store that was not read; with
    --fetch-remote the store is read, and its opt-out excludes the sample."""
    import shutil

    shutil.copy(C2PA_RS / "cloud.jpg", tmp_path)
    shutil.copy(world.pointing, tmp_path)  # XMP dcterms:provenance
    shutil.copy(world.bare, tmp_path)  # a Link header the downloader recorded
    link = f'<{world.base}/bare.c2pa>; rel="c2pa-manifest"'
    (tmp_path / "bare.json").write_text(json.dumps({"headers": {"Link": link}}))
    for policy in ("strict", "permissive"):
        rows = {
            Path(r.path).name: r
            for r in guard.scan([tmp_path], workers=0, watermark=False, policy=policy)
        }
        for name in ("cloud.jpg", "pointing.png", "bare.png"):
            assert rows[name].decision == "unverifiable", (policy, name)
            assert rows[name].signals == ["c2pa_remote_unread"]
            assert rows[name].c2pa_state == "remote"
            assert "not fetched" in rows[name].reasons[0]
    (tmp_path / "cloud.jpg").unlink()  # its store is on the internet, which tests never reach
    rows = {
        Path(r.path).name: r
        for r in guard.scan(
            [tmp_path], workers=0, watermark=False, trust_files=(world.ca,), fetch_remote=FAST
        )
    }
    for name in ("pointing.png", "bare.png"):
        assert rows[name].c2pa_state == "trusted" and rows[name].decision == "opted_out", name
        assert rows[name].signals[0] == "c2pa_training_not_allowed"
