"""A bounded client of the C2PA Soft Binding Resolution API 1.0 (docs/resolvers.md).

For a watermark guard read, each resolver is asked in order:

    GET {resolver}/matches/byBinding?alg=<scheme>&value=<base64 ID>&maxResults=<n>
    GET {resolver}/manifests/{manifestId}          the manifest store, application/c2pa

A resolver is trusted for nothing it says: the bytes it returns are handed to `judge`, which
validates the store on its own against the trust anchors and checks the picture against the
store's own fingerprint, exactly as a local ledger record is (`guard.ledger.match`). The first
answer whose claims apply wins.

Every response is bounded: connect and read timeouts, a deadline for the whole response, a size
cap (the body is streamed and dropped past it), no compressed bodies, no redirect followed, TLS
verified, and at most `max_matches` manifest IDs read from a match list. A resolver that fails
becomes an `Answer` saying why, never an exception. httpx is imported only here, when asked.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from guard.errors import GuardError

if TYPE_CHECKING:
    import httpx

    from guard.ledger.match import LedgerMatch

ENV = "GUARD_RESOLVERS"
MATCHES_TYPE = "application/json"
MANIFEST_TYPE = "application/c2pa"
MANIFEST_ID = re.compile(r"^urn:[A-Za-z0-9][A-Za-z0-9:._-]{0,250}$")
MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one resolver may cost: seconds to connect and between two reads, seconds for a
    whole response, bytes of a match list and of a manifest store, manifest IDs read."""

    connect_s: float = 5.0
    read_s: float = 5.0
    total_s: float = 20.0
    max_matches_bytes: int = 1 * MiB
    max_manifest_bytes: int = 32 * MiB
    max_matches: int = 5


@dataclass(frozen=True)
class Resolvers:
    """The resolvers to ask, in order, and the limits each answer is read under."""

    urls: tuple[str, ...]
    limits: Limits = field(default_factory=Limits)


# how far a resolver got, best last: its answer in the verdict is its best one
RANK = {"no_match": 0, "failed": 1, "rejected": 2, "not_applied": 3, "applies": 4}


@dataclass
class Answer:
    """What one resolver said, in the verdict's `resolvers` list.

    status: applies (a manifest it returned verified and the picture is its picture: its claims
    are used), not_applied (verified, but for another picture or part of this one), rejected
    (what it returned does not verify or is bound to another ID), no_match (it knows no
    manifest for this binding), failed (it could not be asked or answered outside the API or the
    limits: `problem` says how)."""

    url: str
    status: str = "no_match"
    manifest_id: str | None = None
    matches: int = 0  # manifest IDs read from its match list
    problem: str | None = None

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
        }


class ResolverError(Exception):
    """One resolver's failure, in words (it becomes its Answer's problem)."""


def parse_urls(text: str) -> list[str]:
    """Space- or comma-separated URLs (GUARD_RESOLVERS)."""
    return [u for u in re.split(r"[\s,]+", text) if u]


def from_env(given: Sequence[str] = (), limits: Limits | None = None) -> Resolvers | None:
    """--resolver URLs as given, else GUARD_RESOLVERS; None when there is none. A URL that is
    not http(s)://host... is a usage error, raised before any file is read."""
    urls = [u for g in given for u in parse_urls(g)] or parse_urls(os.environ.get(ENV, ""))
    return Resolvers(checked(urls), limits or Limits()) if urls else None


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


def ask(
    resolvers: Resolvers,
    alg: str,
    watermark_id: str,
    judge: Callable[[str, str, bytes], LedgerMatch],
) -> tuple[LedgerMatch | None, list[Answer]]:
    """Ask each resolver in turn for the manifests bound to this watermark ID; `judge(url,
    manifest_id, store)` decides what each returned store is worth. Returns the first match whose
    claims apply, else the first verified one (its claims not applied), else None; and what
    every resolver asked said."""
    try:
        import httpx
    except ImportError:  # httpx is a dependency of guard serve and the dev tools
        problem = "httpx is not installed (pip install httpx): resolvers cannot be asked"
        return None, [Answer(u, "failed", problem=problem) for u in resolvers.urls]
    limits = resolvers.limits
    value = base64.b64encode(bytes.fromhex(watermark_id)).decode()
    answers: list[Answer] = []
    fallback: LedgerMatch | None = None
    with _client(httpx, limits) as client:
        for url in resolvers.urls:
            answer = Answer(url)
            answers.append(answer)
            try:
                ids = _manifest_ids(client, url, alg, value, limits)
            except ResolverError as exc:
                answer.update("failed", None, str(exc))
                continue
            answer.matches = len(ids)
            for manifest_id in ids:
                try:
                    store = _get(
                        client,
                        f"{url}/manifests/{quote(manifest_id, safe=':')}",
                        {},
                        MANIFEST_TYPE,
                        limits.max_manifest_bytes,
                        limits,
                    )
                except ResolverError as exc:
                    answer.update("failed", manifest_id, str(exc))
                    continue
                try:
                    found = judge(url, manifest_id, store)
                except Exception as exc:  # a reader that breaks on hostile bytes: no crash
                    answer.update(
                        "rejected", manifest_id, f"its manifest cannot be read ({exc})"[:300]
                    )
                    continue
                if found.applies:
                    answer.update("applies", manifest_id, None)
                    return found, answers
                if found.verified:
                    answer.update("not_applied", manifest_id, _why_not(found))
                    fallback = fallback or found
                else:
                    answer.update("rejected", manifest_id, found.problem)
    return fallback, answers


def fetch(url: str, media_type: str, max_bytes: int, limits: Limits | None = None) -> bytes:
    """One bounded GET of `url` outside the resolution API (a remote manifest store a file points
    to): the same client and limits as a resolver's answers, no redirect followed, TLS verified.
    Raises ResolverError, in words, for anything but a 200 `media_type` body within the limits."""
    try:
        import httpx
    except ImportError:  # httpx is a dependency of guard serve and the dev tools
        raise ResolverError("httpx is not installed (pip install httpx)") from None
    limits = limits or Limits()
    with _client(httpx, limits) as client:
        return _get(client, url, None, media_type, max_bytes, limits)  # None: keep url's query


def _client(httpx: Any, limits: Limits) -> httpx.Client:
    timeout = httpx.Timeout(limits.read_s, connect=limits.connect_s)
    return httpx.Client(timeout=timeout, follow_redirects=False, verify=True)


def _why_not(found: LedgerMatch) -> str:
    if found.content_region is not None:
        return "its picture is only part of this one"
    if found.content_match is False:
        return "its picture is another picture: the mark was copied onto this one"
    reason = found.content.reason if found.content else None
    return f"its picture could not be compared with this one ({reason or 'nothing to compare'})"


def _manifest_ids(
    client: httpx.Client, url: str, alg: str, value: str, limits: Limits
) -> list[str]:
    """The first `max_matches` manifest IDs of a c2pa.softBindingQueryResult, served here."""
    params = {"alg": alg, "value": value, "maxResults": str(limits.max_matches)}
    body = _get(
        client, f"{url}/matches/byBinding", params, MATCHES_TYPE, limits.max_matches_bytes, limits
    )
    try:
        result = json.loads(body)
    except ValueError:
        raise ResolverError("its match list is not JSON") from None
    matches = result.get("matches") if isinstance(result, dict) else None
    if not isinstance(matches, list):
        raise ResolverError(
            'its match list is not a c2pa.softBindingQueryResult {"matches": [...]}'
        )
    ids: list[str] = []
    for item in matches[: limits.max_matches]:
        manifest_id = item.get("manifestId") if isinstance(item, dict) else None
        if not isinstance(manifest_id, str) or not MANIFEST_ID.match(manifest_id):
            continue  # not a C2PA manifest identifier: never put into a URL
        endpoint = item.get("endpoint")
        if isinstance(endpoint, str) and endpoint.rstrip("/") != url:
            continue  # served elsewhere: only the resolver asked is asked
        ids.append(manifest_id)
    return list(dict.fromkeys(ids))


def _get(
    client: httpx.Client,
    url: str,
    params: dict[str, str] | None,
    media_type: str,
    max_bytes: int,
    limits: Limits,
) -> bytes:
    """One bounded GET: 200 with `media_type`, at most `max_bytes`, within `limits.total_s`."""
    import httpx

    deadline = time.monotonic() + limits.total_s
    headers = {"Accept": media_type, "Accept-Encoding": "identity"}
    try:
        with client.stream("GET", url, params=params, headers=headers) as response:
            if response.is_redirect:
                where = response.headers.get("location", "elsewhere")
                raise ResolverError(
                    f"answered {response.status_code}, a redirect to {where[:200]}; not followed"
                )
            if response.status_code != 200:
                raise ResolverError(f"answered HTTP {response.status_code}")
            got = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if got != media_type:
                raise ResolverError(f"answered {got or 'no content type'}, not {media_type}")
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
                if time.monotonic() > deadline:
                    raise ResolverError(f"its answer took over {limits.total_s:g} s; cut off")
            return bytes(body)
    except httpx.TimeoutException:
        raise ResolverError(
            f"did not answer within {max(limits.connect_s, limits.read_s):g} s"
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        raise ResolverError(f"could not be asked ({type(exc).__name__}: {exc})"[:300]) from None
