"""A bounded client of the C2PA Soft Binding Resolution API 1.0 (docs/resolvers.md).

For a watermark guard read, every resolver is asked at once (at most `Limits.parallel` at a
time):

    GET  {resolver}/matches/byBinding?alg=<scheme>&value=<base64 ID>&maxResults=<n>
    POST {resolver}/matches/byContent?maxResults=<n>     the picture itself, only when the user
                                                         allowed it (--upload-to-resolver)
    GET  {resolver}/manifests/{manifestId}               the manifest store, application/c2pa

A resolver is trusted for nothing it says: the bytes it returns are handed to `judge`, which
validates the store on its own against the trust anchors and checks the picture against the
store's own fingerprint, exactly as a local ledger record is (`guard.ledger.match`). The first
answer whose claims apply wins, whichever resolver gives it; the others are not waited for.

Every response is bounded: connect and read timeouts, a deadline for the whole response with
its headers (guard.resolvers.transport), a budget for all of one resolver's requests, a size cap
(the body is streamed and dropped past it), no compressed bodies, no redirect followed, TLS
verified, and at most `max_matches` manifest IDs read from a match list. Answers are kept in an
on-disk cache as their `Cache-Control` and `ETag` allow (guard.resolvers.cache). A resolver that
fails becomes an `Answer` saying why, never an exception. httpx is imported only here.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from guard.errors import GuardError
from guard.resolvers import transport
from guard.resolvers.cache import Cache, default_dir, policy

if TYPE_CHECKING:
    import httpx

    from guard.ledger.match import LedgerMatch

ENV = "GUARD_RESOLVERS"
MATCHES_TYPE = "application/json"
MANIFEST_TYPE = "application/c2pa"
MANIFEST_ID = re.compile(r"^urn:[A-Za-z0-9][A-Za-z0-9:._-]{0,250}$")
# guard serve's federation: the node IDs of the servers a query has passed through
PATH_HEADER = "Guard-Resolver-Path"
MiB = 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """What one resolver may cost: seconds to connect and between two reads, seconds for one
    whole response (headers included), seconds for all of one resolver's requests, bytes of a
    match list, of a manifest store and of an upload, manifest IDs read, resolvers at once."""

    connect_s: float = 5.0
    read_s: float = 5.0
    total_s: float = 20.0
    budget_s: float = 30.0
    max_matches_bytes: int = 1 * MiB
    max_manifest_bytes: int = 32 * MiB
    max_upload_bytes: int = 32 * MiB
    max_matches: int = 5
    parallel: int = 4


@dataclass(frozen=True)
class Resolvers:
    """The resolvers to ask and how. `upload`: POST the picture to /matches/byContent (the
    user's explicit choice: it sends their image to someone else). `cache`: keep answers on
    disk as their headers allow, in `cache_dir` (None: guard's cache folder). `path`: the
    federation path sent along (guard serve's own node ID and those before it)."""

    urls: tuple[str, ...]
    limits: Limits = field(default_factory=Limits)
    upload: bool = False
    cache: bool = True
    cache_dir: str | None = None
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class Query:
    """What is asked: the watermark read here (alg, 16 hex digits), and the file's bytes and
    media type when they may be uploaded."""

    alg: str | None = None
    watermark_id: str | None = None
    upload: tuple[bytes, str] | None = None


# how far a resolver got, best last: its answer in the verdict is its best one
RANK = {"no_match": 0, "cancelled": 0, "failed": 1, "rejected": 2, "not_applied": 3, "applies": 4}


@dataclass
class Answer:
    """What one resolver said, in the verdict's `resolvers` list.

    status: applies (a manifest it returned verified and the picture is its picture: its claims
    are used), not_applied (verified, but for another picture or part of this one), rejected
    (what it returned does not verify or is bound to another ID), no_match (it knows no
    manifest for this binding), failed (it could not be asked or answered outside the API or the
    limits: `problem` says how), cancelled (another resolver's answer applied first; this one
    was not waited for). uploaded: the picture was sent to it (POST /matches/byContent)."""

    url: str
    status: str = "no_match"
    manifest_id: str | None = None
    matches: int = 0  # manifest IDs read from its match lists
    problem: str | None = None
    uploaded: bool = False

    def update(self, status: str, manifest_id: str | None, problem: str | None) -> None:
        if RANK[status] > RANK[self.status]:
            self.status, self.manifest_id, self.problem = status, manifest_id, problem

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "manifest_id": self.manifest_id,
            "matches": self.matches,
            "problem": self.problem,
            "uploaded": self.uploaded,
        }


class ResolverError(Exception):
    """One resolver's failure, in words (it becomes its Answer's problem)."""


class Cancelled(ResolverError):
    """Another resolver's answer won: this one is no longer waited for."""


class BudgetSpent(ResolverError):
    """This resolver has used all the time one resolver may take: nothing more is asked."""


def parse_urls(text: str) -> list[str]:
    """Space- or comma-separated URLs (GUARD_RESOLVERS)."""
    return [u for u in re.split(r"[\s,]+", text) if u]


def from_env(
    given: Sequence[str] = (), limits: Limits | None = None, *, upload: bool = False
) -> Resolvers | None:
    """--resolver URLs as given, else GUARD_RESOLVERS; None when there is none. A URL that is
    not http(s)://host... is a usage error, raised before any file is read; so is `upload`
    (--upload-to-resolver) with no resolver to upload to."""
    urls = [u for g in given for u in parse_urls(g)] or parse_urls(os.environ.get(ENV, ""))
    if upload and not urls:
        raise GuardError(
            "--upload-to-resolver needs a resolver: give --resolver URL (or set GUARD_RESOLVERS)"
        )
    return Resolvers(checked(urls), limits or Limits(), upload=upload) if urls else None


def checked(urls: Sequence[str]) -> tuple[str, ...]:
    """The URLs without a trailing `/`, each once; one that is not http(s)://host... is a
    usage error (GuardError)."""
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GuardError(f"{url}: a resolver is an http:// or https:// URL")
        if parts.query or parts.fragment:
            raise GuardError(f"{url}: a resolver URL has no query or fragment")
    return tuple(dict.fromkeys(u.rstrip("/") for u in urls))


# -- verify: ask every resolver, judge what they return ---------------------------------------


def ask(
    resolvers: Resolvers,
    query: Query,
    judge: Callable[[str, str, bytes], LedgerMatch],
) -> tuple[LedgerMatch | None, list[Answer]]:
    """Ask the resolvers, in parallel, for the manifests bound to this watermark ID (and, with
    `query.upload`, matching the picture); `judge(url, manifest_id, store)` decides what each
    returned store is worth. Returns the first match whose claims apply, else the verified one
    of the earliest-listed resolver (its claims not applied), else None; and what every
    resolver said, in the order given."""
    if not (query.watermark_id or query.upload):
        return None, []
    try:
        session = Session(resolvers)
    except ResolverError as exc:
        return None, [Answer(u, "failed", problem=str(exc)) for u in resolvers.urls]
    judging = threading.Lock()  # the network in parallel; the stores judged one at a time

    def one(url: str) -> tuple[Answer, LedgerMatch | None]:
        return _ask_one(session, url, query, judge, judging)

    results = race(
        resolvers.urls,
        one,
        resolvers.limits.parallel,
        session.stop,
        lambda r: bool(r[0].status == "applies"),
    )
    answers: list[Answer] = []
    winner: LedgerMatch | None = None
    fallback: LedgerMatch | None = None
    for url in resolvers.urls:
        if url not in results:
            why = "not waited for: another resolver's answer applied first"
            answers.append(Answer(url, "cancelled", problem=why))
            continue
        answer, found = results[url]
        answers.append(answer)
        if found is not None and found.applies:
            winner = winner or found
        elif found is not None:
            fallback = fallback or found
    return winner or fallback, answers


def _ask_one(
    session: Session,
    url: str,
    query: Query,
    judge: Callable[[str, str, bytes], LedgerMatch],
    judging: threading.Lock,
) -> tuple[Answer, LedgerMatch | None]:
    """One resolver's whole conversation, within its budget: byBinding, then (allowed and
    nothing applied) byContent, then each manifest named, judged. Returns what it said and its
    best record: the one whose claims apply, else the first that verified."""
    answer = Answer(url)
    kept: list[LedgerMatch] = []  # verified records, best first
    try:
        with transport.deadline(session.limits.budget_s):
            _conversation(session, url, query, judge, judging, answer, kept)
    except BudgetSpent as exc:  # what it said so far stands; the budget is why it stopped
        if RANK[answer.status] <= RANK["failed"]:
            answer.status, answer.problem = "failed", str(exc)
    except Cancelled:
        answer.update("cancelled", None, "not waited for: another resolver answered")
    return answer, (kept[0] if kept else None)


def _conversation(
    session: Session,
    url: str,
    query: Query,
    judge: Callable[[str, str, bytes], LedgerMatch],
    judging: threading.Lock,
    answer: Answer,
    kept: list[LedgerMatch],
) -> None:
    seen: set[str] = set()
    for how in ("binding", "content"):
        try:
            if how == "binding":
                if not (query.watermark_id and query.alg):
                    continue
                ids = matches(session, url, query.alg, _value(query.watermark_id))
            else:
                if query.upload is None:
                    continue
                answer.uploaded = True
                ids = _by_content(session, url, *query.upload)
        except NotSent as exc:
            answer.uploaded = False
            answer.update("failed", None, str(exc))
            continue
        except (BudgetSpent, Cancelled):
            raise
        except ResolverError as exc:
            answer.update("failed", None, str(exc))
            continue
        ids = [i for i in ids if i not in seen]
        seen.update(ids)
        answer.matches += len(ids)
        for manifest_id in ids:
            found = _judge_one(session, url, manifest_id, answer, judge, judging)
            if found is not None and found.applies:
                kept.insert(0, found)
                return
            if found is not None and found.verified:
                kept.append(found)


def _judge_one(
    session: Session,
    url: str,
    manifest_id: str,
    answer: Answer,
    judge: Callable[[str, str, bytes], LedgerMatch],
    judging: threading.Lock,
) -> LedgerMatch | None:
    try:
        store = manifest(session, url, manifest_id)
    except (BudgetSpent, Cancelled):
        raise
    except ResolverError as exc:
        answer.update("failed", manifest_id, str(exc))
        return None
    try:
        with judging:
            if session.stop.is_set():
                return None
            found = judge(url, manifest_id, store)
    except Exception as exc:  # a reader that breaks on hostile bytes: no crash
        answer.update("rejected", manifest_id, f"its manifest cannot be read ({exc})"[:300])
        return None
    if found.applies:
        answer.update("applies", manifest_id, None)
    elif found.verified:
        answer.update("not_applied", manifest_id, _why_not(found))
    else:
        answer.update("rejected", manifest_id, found.problem)
    return found


def _why_not(found: LedgerMatch) -> str:
    if found.content_region is not None:
        return "its picture is only part of this one"
    if found.content_match is False:
        return "its picture is another picture: the mark was copied onto this one"
    reason = found.content.reason if found.content else None
    return f"its picture could not be compared with this one ({reason or 'nothing to compare'})"


def _value(watermark_id: str) -> str:
    return base64.b64encode(bytes.fromhex(watermark_id)).decode()


# -- the API's operations, one resolver each ------------------------------------------------------


def matches(session: Session, url: str, alg: str, value: str) -> list[str]:
    """GET /matches/byBinding: the manifest IDs of its c2pa.softBindingQueryResult."""
    params = {"alg": alg, "value": value, "maxResults": str(session.limits.max_matches)}
    body = session.get(
        f"{url}/matches/byBinding", params, MATCHES_TYPE, session.limits.max_matches_bytes
    )
    return _manifest_ids(body, url, session.limits)


def _by_content(session: Session, url: str, data: bytes, media_type: str) -> list[str]:
    """POST /matches/byContent with the picture: the manifest IDs of the answer."""
    limits = session.limits
    if len(data) > limits.max_upload_bytes:
        raise NotSent(f"the file is over {limits.max_upload_bytes} bytes; it was not uploaded")
    params = {"maxResults": str(limits.max_matches)}
    body = session.post(
        f"{url}/matches/byContent", params, data, media_type, MATCHES_TYPE, limits.max_matches_bytes
    )
    return _manifest_ids(body, url, limits)


def manifest(session: Session, url: str, manifest_id: str) -> bytes:
    """GET /manifests/{manifestId}: the manifest store's bytes, as served."""
    return session.get(
        f"{url}/manifests/{quote(manifest_id, safe=':')}",
        {},
        MANIFEST_TYPE,
        session.limits.max_manifest_bytes,
    )


def match_list(body: bytes, url: str, limits: Limits) -> list[dict[str, Any]]:
    """The first `max_matches` matches of a c2pa.softBindingQueryResult that are served by
    `url` itself, each as {"manifestId", "similarityScore"?}: an ID that is not a C2PA manifest
    identifier is never put into a URL, and one served elsewhere (`endpoint`) is left out."""
    try:
        result = json.loads(body)
    except ValueError:
        raise ResolverError("its match list is not JSON") from None
    items = result.get("matches") if isinstance(result, dict) else None
    if not isinstance(items, list):
        raise ResolverError(
            'its match list is not a c2pa.softBindingQueryResult {"matches": [...]}'
        )
    out: dict[str, dict[str, Any]] = {}
    for item in items[: limits.max_matches]:
        manifest_id = item.get("manifestId") if isinstance(item, dict) else None
        if not isinstance(manifest_id, str) or not MANIFEST_ID.match(manifest_id):
            continue
        endpoint = item.get("endpoint")
        if isinstance(endpoint, str) and endpoint.rstrip("/") != url:
            continue  # served elsewhere: only the resolver asked is asked
        match: dict[str, Any] = {"manifestId": manifest_id}
        score = item.get("similarityScore")
        if isinstance(score, int) and not isinstance(score, bool):
            match["similarityScore"] = min(100, max(0, score))
        out.setdefault(manifest_id, match)
    return list(out.values())


def _manifest_ids(body: bytes, url: str, limits: Limits) -> list[str]:
    return [m["manifestId"] for m in match_list(body, url, limits)]


def fetch(url: str, media_type: str, max_bytes: int, limits: Limits | None = None) -> bytes:
    """One bounded, cached GET of any URL (a remote manifest store a file points to): 200 with
    `media_type`, at most `max_bytes`; ResolverError otherwise."""
    session = Session(Resolvers((), limits or Limits()))
    with transport.deadline((limits or Limits()).budget_s):
        return session.get(url, {}, media_type, max_bytes)


# -- running several resolvers at once -----------------------------------------------------------


def race(
    urls: Sequence[str],
    work: Callable[[str], T],
    parallel: int,
    stop: threading.Event,
    wins: Callable[[T], bool] = lambda _: False,
) -> dict[str, T]:
    """`work(url)` for every URL, at most `parallel` at once, in daemon threads (a resolver that
    keeps a socket open cannot keep the process from exiting). Returns every result, or, as
    soon as one `wins`, the results so far (and sets `stop`, which the others' requests read)."""
    todo: queue.Queue[str] = queue.Queue()
    for url in urls:
        todo.put(url)
    done: queue.Queue[tuple[str, T | BaseException]] = queue.Queue()

    def worker() -> None:
        while not stop.is_set():
            try:
                url = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((url, work(url)))
            except BaseException as exc:  # reported to the caller's thread
                done.put((url, exc))

    for _ in range(max(1, min(parallel, len(urls)))):
        threading.Thread(target=worker, daemon=True, name="guard-resolver").start()
    results: dict[str, T] = {}
    for _ in range(len(urls)):
        url, result = done.get()
        if isinstance(result, BaseException):
            stop.set()
            raise result
        results[url] = result
        if wins(result):
            stop.set()
            break
    return results


# -- one bounded request --------------------------------------------------------------------------


class NotSent(ResolverError):
    """The upload never left this machine (too large, or no connection was made)."""


_CLIENTS: dict[tuple[int, float, float], httpx.Client] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(limits: Limits) -> httpx.Client:
    """One httpx client per process and timeouts (connections are kept alive across files and
    threads), every socket of it under the deadline of guard.resolvers.transport."""
    try:
        import httpx
    except ImportError:  # httpx is a dependency of guard serve and the dev tools
        raise ResolverError(
            "httpx is not installed (pip install httpx): resolvers cannot be asked"
        ) from None
    from guard import __version__

    key = (os.getpid(), limits.connect_s, limits.read_s)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = httpx.Client(
                timeout=httpx.Timeout(limits.read_s, connect=limits.connect_s),
                follow_redirects=False,
                verify=True,
                headers={"User-Agent": f"guard/{__version__}"},
            )
            try:
                transport.bound(client)
            except transport.NoDeadline as exc:
                client.close()
                raise ResolverError(str(exc)) from None
            _CLIENTS[key] = client
    return client


def _url(url: str, params: dict[str, str]) -> str:
    import httpx

    try:
        return str(httpx.URL(url).copy_merge_params(params) if params else httpx.URL(url))
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ResolverError(f"not a URL that can be asked ({exc})"[:300]) from None


class Session:
    """The client, cache and limits one verify (or one server request) asks under, and the
    `stop` that ends its requests early once another resolver's answer has won."""

    def __init__(self, resolvers: Resolvers, *, shared: bool = False) -> None:
        self.limits = resolvers.limits
        self.client = _client(resolvers.limits)
        self.stop = threading.Event()
        folder = Path(resolvers.cache_dir) if resolvers.cache_dir else default_dir() / "resolvers"
        self.cache = Cache(folder, shared=shared) if resolvers.cache else None
        self.headers = {"Accept-Encoding": "identity"}
        if resolvers.path:
            self.headers[PATH_HEADER] = ", ".join(resolvers.path)

    def get(self, url: str, params: dict[str, str], media_type: str, max_bytes: int) -> bytes:
        """A GET through the cache: a fresh entry is used as it is; a stale one with an ETag is
        asked for again with If-None-Match (a 304 keeps its bytes). `params` are added to the
        URL's own query."""
        key = _url(url, params)
        entry = self.cache.get(key) if self.cache else None
        if entry is not None and entry.fresh:
            return entry.body
        headers = {**self.headers, "Accept": media_type}
        asked = entry if entry is not None and entry.etag else None  # a 304 only to this
        if asked is not None:
            headers["If-None-Match"] = str(asked.etag)
        status, body, answered = self._request(
            "GET", key, headers, None, media_type, max_bytes, asked is not None
        )
        if self.cache is not None:
            rule = policy(answered, shared=self.cache.shared)
            if status == 304 and asked is not None:
                self.cache.refresh(asked, rule)
                return asked.body
            self.cache.put(key, body, rule)
        return body

    def post(
        self,
        url: str,
        params: dict[str, str],
        data: bytes,
        content_type: str,
        media_type: str,
        max_bytes: int,
    ) -> bytes:
        """A POST (never cached: its answer is about the body sent)."""
        headers = {**self.headers, "Accept": media_type, "Content-Type": content_type}
        return self._request(
            "POST", _url(url, params), headers, data, media_type, max_bytes, False
        )[1]

    def _request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        data: bytes | None,
        media_type: str,
        max_bytes: int,
        may_304: bool,
    ) -> tuple[int, bytes, httpx.Headers]:
        """One bounded request: 200 with `media_type` (or 304 when `may_304`), at most
        `max_bytes`, the whole response within `limits.total_s` and the resolver's budget."""
        import httpx

        limits = self.limits
        if self.stop.is_set():
            raise Cancelled("another resolver answered first")
        started = time.monotonic()
        with transport.deadline(limits.total_s):
            try:
                with self.client.stream(method, url, headers=headers, content=data) as response:
                    return self._read(response, media_type, max_bytes, may_304)
            except httpx.TimeoutException as exc:
                if self.stop.is_set():
                    raise Cancelled("another resolver answered first") from None
                if transport.passed():
                    spent = time.monotonic() - started
                    if spent >= limits.total_s - 0.05:
                        raise ResolverError(
                            f"its answer took over {limits.total_s:g} s; cut off"
                        ) from None
                    raise BudgetSpent(
                        f"it used up the {limits.budget_s:g} s one resolver may take; cut off"
                    ) from None
                if data is not None and isinstance(exc, httpx.ConnectTimeout):
                    raise NotSent(f"could not be reached within {limits.connect_s:g} s") from None
                raise ResolverError(
                    f"did not answer within {max(limits.connect_s, limits.read_s):g} s"
                ) from None
            except httpx.ConnectError as exc:
                kind = NotSent if data is not None else ResolverError
                raise kind(f"could not be reached ({exc})"[:300]) from None
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
                raise ResolverError(
                    f"could not be asked ({type(exc).__name__}: {exc})"[:300]
                ) from None

    def _read(
        self, response: httpx.Response, media_type: str, max_bytes: int, may_304: bool
    ) -> tuple[int, bytes, httpx.Headers]:
        if response.status_code == 304 and may_304:
            return 304, b"", response.headers
        if response.is_redirect:
            where = response.headers.get("location", "elsewhere")
            raise ResolverError(
                f"answered {response.status_code}, a redirect to {where[:200]}; not followed"
            )
        if response.status_code != 200:
            raise ResolverError(f"answered HTTP {response.status_code}")
        got = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if got != media_type:
            raise ResolverError(f"answered {got[:80] or 'no content type'}, not {media_type}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ResolverError(f"answered a {encoding[:40]}-encoded body, not asked for")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes:
            raise ResolverError(f"its answer is {int(length)} bytes, over {max_bytes}")
        body = bytearray()
        for chunk in response.iter_raw():
            body += chunk
            if len(body) > max_bytes:
                raise ResolverError(f"its answer ran over {max_bytes} bytes; cut off")
            if self.stop.is_set():
                raise Cancelled("another resolver answered first")
        return 200, bytes(body), response.headers
