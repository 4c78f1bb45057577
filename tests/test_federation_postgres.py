"""Issue 18's "Done when", as one chain of real processes on one machine (no mocks):

1. server A is `guard serve --read-only --ledger postgresql://…` over a ledger that four
   `guard sign --ledger postgresql://…` processes, started at once, wrote into;
2. server B is `guard serve --read-only --upstream-only --upstream A`;
3. a client with none of the studio's state runs `guard verify --resolver B --json` on a
   stripped, re-encoded (JPEG) copy of one signed picture, and gets A's record: verified,
   `content_match` true, its claims applied;
4. a transplanted mark (one picture's mark on another picture) gets no claims through B, and
   neither does anything a hostile upstream serves through a B in front of it.

The PostgreSQL server is pg_support's throwaway cluster (a Unix socket only); every HTTP server
is on 127.0.0.1. The same commands are in docs/serve.md (Federation).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import art
from PIL import Image
from serve_support import HOST, entered, free_port, jpeg, live_server, serve_process

pytest.importorskip("uvicorn")
pytest.importorskip("httpx")
pytest.importorskip("psycopg")

import httpx
from pg_support import Cluster
from resolver_support import Hostile, no_proxy
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from guard import watermark
from guard.ledger import Ledger, postgres

SIGNERS = 4
EACH = 2  # pictures each signer signs
SIZE = (256, 256)


def env(home: Path) -> dict[str, str]:
    """A process of its own user's: its GUARD_HOME, no other GUARD_* setting, no proxy."""
    proxies = {"http_proxy", "https_proxy", "all_proxy"}
    out = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GUARD_") and k.lower() not in proxies
    }
    return out | {"GUARD_HOME": str(home)}


def guard_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "guard", *args]


@dataclass
class Picture:
    original: Path  # the unsigned picture
    signed: Path  # what `guard sign` wrote
    watermark_id: str
    manifest_id: str
    stripped: Path  # a JPEG re-encode of the signed pixels: no metadata at all


class Forger:
    """A hostile resolver: for each mark it is set up for, it names that picture's true manifest
    ID and serves a store of its own choosing under it."""

    def __init__(self) -> None:
        self.named: dict[str, str] = {}  # byBinding value → manifest ID
        self.served: dict[str, bytes] = {}  # manifest ID → the store it serves
        self.hostile = Hostile(matches=self._matches, manifest=self._manifest)

    def answer(self, picture: Picture, store: bytes) -> None:
        value = base64.b64encode(bytes.fromhex(picture.watermark_id)).decode()
        self.named[value] = picture.manifest_id
        self.served[picture.manifest_id] = store

    def _matches(self, request: Request) -> JSONResponse:
        found = self.named.get(request.query_params.get("value", ""))
        return JSONResponse({"matches": [{"manifestId": found}] if found else []})

    def _manifest(self, request: Request) -> Response:
        store = self.served.get(request.path_params["manifestId"])
        if store is None:
            return Response(status_code=404)
        return Response(store, media_type="application/c2pa")


@dataclass
class Studio:
    """An organisation that signs on four workers into one PostgreSQL ledger, served by A and
    fronted by B; and a B in front of a hostile resolver."""

    url: str  # the ledger
    ca: Path  # its CA: what a client trusts, and nothing else of the studio's
    pictures: list[Picture]
    a: str  # guard serve --read-only --ledger postgresql://…
    b: str  # guard serve --read-only --upstream-only --upstream A
    forger: Forger
    b_forger: str  # guard serve --read-only --upstream-only --upstream FORGER


def signer(home: Path, url: str, out_dir: Path, pictures: list[Path]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *guard_cmd("sign", "--ledger", url, "--source", "ai", "--author", "Ada", "--json"),
            *["--out-dir", str(out_dir), *map(str, pictures)],
        ],
        env=env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stopped(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()


@pytest.fixture(scope="module")
def studio(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """The database is made first (its first writer's open, as `guard ledger import` would);
    then four `guard sign --ledger postgresql://…` processes start at once, two pictures each,
    with one shared identity (a studio's four GPU workers sign with its one certificate). While
    they sign, the servers start, all at once, each `guard serve` in its own process with its
    own GUARD_HOME: A serves the database read-only; B, with no ledger and no trust of its own,
    fronts A (on the port A is given: B asks nothing of A until it is asked); and another such
    B fronts the forger."""
    from guard import config
    from guard.identity.local_ca import init_local

    url = pg_cluster.new_ledger()
    Ledger(url).close()  # a read-only server needs the table there: it never makes it
    home = tmp_path_factory.mktemp("studio_home")
    folder = tmp_path_factory.mktemp("studio")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_HOME", str(home))
        init_local(name="Ada", org="Studio", quiet=True)
        ca = config.identity_dir() / "ca.pem"
    originals = []
    for i in range(SIGNERS * EACH):
        originals.append(folder / f"art{i}.png")
        art(*SIZE, seed=100 + i).save(originals[-1])
    forger = Forger()
    with contextlib.ExitStack() as stack:
        stack.callback(postgres.close_pools)
        procs = [
            signer(home, url, folder / f"signer{k}", originals[k * EACH : (k + 1) * EACH])
            for k in range(SIGNERS)
        ]
        stack.callback(stopped, procs)
        no_proxy(stack.enter_context(pytest.MonkeyPatch.context()))  # the servers' too
        front = ["--read-only", "--upstream-only", "--upstream"]
        bad = stack.enter_context(live_server(forger.hostile.app(None)))  # it needs no World
        a_port = free_port()
        b_forger, a, b = entered(
            stack,
            serve_process(folder / "b_forger_home", *front, bad),
            serve_process(folder / "a_home", "--read-only", "--ledger", url, port=a_port),
            serve_process(folder / "b_home", *front, f"http://{HOST}:{a_port}"),
        )
        assert a == f"http://{HOST}:{a_port}"
        outputs = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
        signed = {Path(r["path"]).name: r for out, _ in outputs for r in json.loads(out)}
        pictures = []
        for original in originals:
            row = signed[f"{original.stem}.signed.png"]
            path = Path(row["path"])
            stripped = folder / f"{original.stem}.stripped.jpg"
            stripped.write_bytes(jpeg(path))
            pictures.append(Picture(original, path, row["watermark_id"], row["manifest"], stripped))
        yield Studio(url, ca, pictures, a, b, forger, b_forger)


def by_binding(base: str, watermark_id: str) -> list[dict]:
    value = base64.b64encode(bytes.fromhex(watermark_id)).decode()
    params = {"alg": watermark.ALGORITHM, "value": value}
    got = httpx.get(f"{base}/matches/byBinding", params=params, timeout=30)
    assert got.status_code == 200, got.text
    return got.json()["matches"]


def client_verify(studio: Studio, home: Path, resolver: str, *paths: Path) -> list[dict]:
    """`guard verify --json --trust CA --resolver URL PATHS` as a recipient runs it: its own
    process and GUARD_HOME (no ledger, no cache), the studio's CA its only tie to the studio."""
    proc = subprocess.run(
        [
            *guard_cmd("verify", "--json", "--trust", str(studio.ca)),
            *["--resolver", resolver, "--workers", "0"],
            *map(str, paths),
        ],
        env=env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr  # no manifest in a stripped file: exit codes as ever
    return json.loads(proc.stdout)


def no_claims(d: dict) -> None:
    assert d["training"] is None and d["digital_source_type"] is None
    ledger = d["ledger"]
    assert ledger.get("author") is None and ledger.get("signer") is None
    assert ledger.get("training") is None and ledger.get("content_match") is not True


def test_1_a_runs_on_postgresql_fed_by_four_concurrent_signers(studio: Studio) -> None:
    a = studio.a
    ids = [p.watermark_id for p in studio.pictures]
    assert len(set(ids)) == SIGNERS * EACH and all(ids)
    with Ledger(studio.url, read_only=True) as ledger:
        assert len(ledger) == SIGNERS * EACH
        assert {r.watermark_id for r in ledger} == set(ids)
    for p in studio.pictures:  # every signer's records, from the one server
        assert by_binding(a, p.watermark_id) == [
            {"manifestId": p.manifest_id, "similarityScore": 100}
        ]


def test_2_b_answers_from_a(studio: Studio) -> None:
    """B holds nothing: every answer is A's, a store as the bytes A served."""
    a, b = studio.a, studio.b
    for p in studio.pictures:
        assert [m["manifestId"] for m in by_binding(b, p.watermark_id)] == [p.manifest_id]
    p = studio.pictures[-1]
    from_b = httpx.get(f"{b}/manifests/{p.manifest_id}", timeout=30)
    from_a = httpx.get(f"{a}/manifests/{p.manifest_id}", timeout=30)
    assert from_b.status_code == 200 and from_b.content == from_a.content
    assert from_b.headers["content-type"] == "application/c2pa"


def transplant(p: Picture, path: Path) -> Path:
    """The copy attack: one signed picture's mark (signed minus original) added to another
    picture."""
    marked = np.asarray(Image.open(p.signed).convert("RGB"), dtype=np.int16)
    clean = np.asarray(Image.open(p.original).convert("RGB"), dtype=np.int16)
    other = np.asarray(art(*SIZE, seed=7), dtype=np.int16)
    Image.fromarray(np.clip(other + marked - clean, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def through_b(studio: Studio, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """What tests 3 and 4 ask of B, in one `guard verify --resolver B` launch (one recipient,
    two files): a stripped copy of a picture that is neither the first signer's nor the last's,
    and the first picture's mark transplanted onto another picture."""
    folder = tmp_path_factory.mktemp("through_b")
    stripped = studio.pictures[SIGNERS * EACH // 2 + 1].stripped
    lifted = transplant(studio.pictures[0], folder / "transplant.png")
    d_stripped, d_lifted = client_verify(studio, folder / "client", studio.b, stripped, lifted)
    return {"stripped": d_stripped, "transplant": d_lifted}


def test_3_a_stripped_copy_gets_as_record_through_b(
    studio: Studio, through_b: dict[str, dict]
) -> None:
    b = studio.b
    p = studio.pictures[SIGNERS * EACH // 2 + 1]  # neither the first signer's nor the last's
    d = through_b["stripped"]
    assert d["file"] == str(p.stripped)
    assert d["watermark"]["status"] == "found" and d["watermark"]["id"] == p.watermark_id
    ledger = d["ledger"]
    assert ledger["match"] and ledger["verified"] and ledger["content_match"] is True
    assert ledger["resolver"] == b and ledger["watermark_id"] == p.watermark_id
    assert ledger["author"] == "Ada" and ledger["signer"] and ledger["training"] == "notAllowed"
    assert d["training"] == "notAllowed" and d["digital_source_type"].endswith(
        "/trainedAlgorithmicMedia"
    )
    (answer,) = d["resolvers"]
    assert answer["url"] == b and answer["status"] == "applies"
    assert answer["manifest_id"] == p.manifest_id


def test_4_a_transplanted_mark_gets_no_claims(studio: Studio, through_b: dict[str, dict]) -> None:
    """The copy attack: one signed picture's mark (signed minus original) added to another
    picture. B finds A's true record by the mark; the client's content check refuses it."""
    p = studio.pictures[0]
    d = through_b["transplant"]
    assert d["file"].endswith("transplant.png")
    assert d["watermark"]["id"] == p.watermark_id  # the mark survived the transplant
    assert d["ledger"]["verified"] and d["ledger"]["content_match"] is False
    no_claims(d)
    assert d["resolvers"][0]["status"] == "not_applied"


def test_4_a_hostile_upstream_gets_no_claims(studio: Studio, tmp_path: Path) -> None:
    """B in front of a hostile resolver that answers for two of the studio's marks: for one with
    a store forged by a key nobody trusts (this picture, this ID, training allowed), for the
    other with the studio's own valid store of another picture and ID. Neither lends a claim."""
    import guard
    from guard.identity.local_ca import init_local
    from guard.provenance.spec import ManifestSpec

    forged_for, swapped_for, swapped_in = studio.pictures[1], studio.pictures[3], studio.pictures[4]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_HOME", str(tmp_path / "mallory_home"))
        init_local(name="Mallory", quiet=True)  # a key of her own, in no one's trust list
        with guard.Ledger(tmp_path / "mallory.sqlite3") as book:
            guard.publish(
                Image.open(forged_for.signed).convert("RGB"),
                tmp_path / "forged.png",
                ManifestSpec(author="Mallory", training="allowed"),
                watermark_id=forged_for.watermark_id,
                ledger=book,
            )
            forged = book.get(forged_for.watermark_id).manifest
    with Ledger(studio.url, read_only=True) as ledger:
        other = ledger.get(swapped_in.watermark_id).manifest
    assert forged and other
    studio.forger.answer(forged_for, forged)
    studio.forger.answer(swapped_for, other)
    results = client_verify(
        studio, tmp_path / "client", studio.b_forger, forged_for.stripped, swapped_for.stripped
    )
    assert studio.forger.hostile.manifest_requests >= 2  # both stores were served, and judged
    why = ("trust list", "watermark ID")  # signed by a stranger; bound to another mark
    for d, p, words in zip(results, (forged_for, swapped_for), why, strict=True):
        assert d["watermark"]["id"] == p.watermark_id
        no_claims(d)
        assert d["ledger"] == {"match": False}
        (answer,) = d["resolvers"]
        assert answer["url"] == studio.b_forger and answer["manifest_id"] == p.manifest_id
        assert answer["status"] == "rejected" and words in answer["problem"], answer
