"""`guard serve --upstream URL`: what the local ledger cannot answer is asked of other resolvers.

A byBinding query (GET or POST) whose binding the ledger does not hold, and a /manifests/{id}
it does not have, go to the upstream resolvers through guard's own bounded client
(guard.resolvers: timeouts, a deadline per answer with its headers, size caps, no redirects,
the on-disk cache as Cache-Control and ETag allow). Their answers are passed on: a match list
rebuilt from the IDs they name (only C2PA manifest identifiers, at most `maxResults`, without
an `endpoint`: this server serves them), and a manifest store as the bytes it was. Nothing an
upstream says is vouched for here: a client validates every store itself, as it would one from
the upstream directly. byContent is federated by ID: the picture's mark is read here and its ID
asked upstream (the check worker's verify does it); the picture itself never leaves this server.

Loops and fan-out are bounded. Each server has a random node ID; a forwarded query carries the
IDs of the servers it passed through (`Guard-Resolver-Path`). A server never forwards a query
whose path holds its own ID (a cycle) or already `max_hops` IDs, nor one whose path header is
malformed: it answers from its ledger alone. At most `FORWARDING` queries are forwarded at once
(503 past it), each to at most `Limits.parallel` upstreams at a time.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException

from guard.resolvers import client, transport
from guard.resolvers.client import PATH_HEADER, Limits, ResolverError, Resolvers, Session
from guard.server.errors import ServerError

if TYPE_CHECKING:
    from starlette.requests import Request

    from guard.server.settings import ServeSettings

log = logging.getLogger("guard.server")
NODE = re.compile(r"^[0-9a-f]{16}$")
MAX_PATH_HEADER = 1024  # bytes: far more than max_hops IDs of 16 hex digits
FORWARDING = 16  # queries forwarded upstream at once
REMEMBERED = 4096  # manifest IDs remembered with the upstream that named them
# the upstream answers are passed on with no freshness of this server's own: a client asks
# again each time (a 304 when nothing changed), so nobody keeps an answer longer than its
# upstream allowed this server to
PASSED_ON = "no-cache"


class Federation:
    def __init__(self, settings: ServeSettings) -> None:
        self.node = secrets.token_hex(8)
        self.upstreams = settings.upstreams
        self.max_hops = settings.max_hops
        cache_dir = str(settings.cache_dir) if settings.cache_dir else None
        self.resolvers = Resolvers(self.upstreams, Limits(), cache_dir=cache_dir)
        self._slots = threading.BoundedSemaphore(FORWARDING)
        self._where: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def path(self, request: Request) -> tuple[str, ...] | None:
        """The path to send upstream with this request's query, or None when it must not be
        forwarded (no upstreams, a cycle, too many hops, a malformed path)."""
        if not self.upstreams:
            return None
        raw = request.headers.get(PATH_HEADER, "")
        if len(raw) > MAX_PATH_HEADER:
            return None
        ids = [p.strip() for p in raw.split(",") if p.strip()]
        if not all(NODE.match(i) for i in ids):
            return None
        if self.node in ids:
            log.info("a query came back to this server (%s): not forwarded again", raw)
            return None
        if len(ids) >= self.max_hops:
            return None
        return (*ids, self.node)

    def worker_resolvers(self) -> Resolvers | None:
        """What a check worker asks for a mark the ledger lacks (byContent, the Verify page)."""
        if not self.upstreams:
            return None
        return replace(self.resolvers, path=(self.node,))

    def matches(self, alg: str, value: str, max_results: int, path: tuple[str, ...]) -> list[Any]:
        """byBinding asked of every upstream at once: their matches, in the upstreams' order,
        each ID once. ServerError 500 when no upstream could answer at all."""
        with self._forwarding():
            session = Session(replace(self.resolvers, path=path), shared=True)
            limits = self.resolvers.limits

            def one(url: str) -> list[dict[str, Any]] | str:
                try:
                    with transport.deadline(limits.budget_s):
                        body = session.get(
                            f"{url}/matches/byBinding",
                            {"alg": alg, "value": value, "maxResults": str(max_results)},
                            client.MATCHES_TYPE,
                            limits.max_matches_bytes,
                        )
                    return client.match_list(body, url, replace(limits, max_matches=max_results))
                except ResolverError as exc:
                    return str(exc)

            results = client.race(self.upstreams, one, limits.parallel, session.stop)
        out: dict[str, dict[str, Any]] = {}
        failed = []
        for url in self.upstreams:
            got = results.get(url)
            if isinstance(got, str) or got is None:
                failed.append(f"{url}: {got}")
                continue
            for match in got:
                if match["manifestId"] not in out:
                    out[match["manifestId"]] = match
                    self.remember(match["manifestId"], url)
        if not out and len(failed) == len(self.upstreams):
            log.warning("no upstream resolver answered: %s", "; ".join(failed))
            raise ServerError("the upstream resolvers could not be asked", 500)
        return list(out.values())[:max_results]

    def manifest(self, manifest_id: str, path: tuple[str, ...]) -> bytes | None:
        """The store for this ID from the upstream that named it, else from every upstream at
        once (the first that has it): its bytes as served, or None when none has it."""
        with self._forwarding():
            session = Session(replace(self.resolvers, path=path), shared=True)
            limits = self.resolvers.limits
            with self._lock:
                named = self._where.get(manifest_id)
            order = [named] if named else list(self.upstreams)

            def one(url: str) -> bytes | None:
                try:
                    with transport.deadline(limits.budget_s):
                        return client.manifest(session, url, manifest_id)
                except ResolverError:
                    return None

            results = client.race(
                order, one, limits.parallel, session.stop, lambda r: r is not None
            )
            if not any(results.values()) and named:  # the one that named it has lost it
                rest = [u for u in self.upstreams if u != named]
                results = client.race(
                    rest, one, limits.parallel, session.stop, lambda r: r is not None
                )
        return next((r for r in results.values() if r is not None), None)

    def _forwarding(self) -> Any:
        """One of the FORWARDING slots, or 503 at once."""
        if not self._slots.acquire(blocking=False):
            raise HTTPException(
                503,
                "too many queries are being forwarded upstream; try again",
                headers={"Retry-After": "5"},
            )
        return _Release(self._slots)

    def remember(self, manifest_id: str, url: str) -> None:
        with self._lock:
            self._where[manifest_id] = url
            self._where.move_to_end(manifest_id)
            while len(self._where) > REMEMBERED:
                self._where.popitem(last=False)


class _Release:
    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self.slots = slots

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.slots.release()
