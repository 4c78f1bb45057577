"""The resolver client's on-disk HTTP cache: `Cache-Control` (max-age, s-maxage, no-store,
no-cache, private) and `ETag` (a stale entry is asked again with If-None-Match; a 304 keeps its
bytes). docs/resolvers.md.

What is kept is what a resolver returned, byte for byte, and only an answer that passed the
client's checks (200, the API's media type, within the size limits). Nothing in it is trusted:
a cached manifest store is judged like a fresh one each time it is used. Keys are the full
request URL (resolver, path and query), so one resolver's answers never stand for another's.

One file per entry (a JSON header line, then the body), written atomically, so scan workers in
several processes share a cache safely; the folder is bounded (`max_bytes`, oldest entries
removed first). A shared cache (a `guard serve` that asks upstream resolvers for others) keeps
no `private` answer and reads `s-maxage` before `max-age`, as RFC 9111 says of shared caches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV = "GUARD_CACHE"
MiB = 1024 * 1024
MAX_AGE_S = 86_400  # however long a resolver says, an answer is asked for again after a day
EVICT_EVERY = 32  # stores between two checks of the folder's size


def default_dir() -> Path:
    """GUARD_CACHE; else `cache/` in GUARD_HOME when that is set (tests, CI, platforms); else
    the user's cache folder (platformdirs)."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    if os.environ.get("GUARD_HOME"):
        from guard import config

        return config.home() / "cache"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("guard", appauthor=False))


@dataclass(frozen=True)
class Policy:
    """What a response's headers allow a cache to do with it."""

    store: bool  # may be kept at all
    max_age: float | None  # seconds it is fresh, counted from when it was received
    etag: str | None  # validator for If-None-Match


def policy(headers: Mapping[str, str], *, shared: bool = False) -> Policy:
    """Read Cache-Control, Age and ETag. Without a max-age an answer is never fresh; it is kept
    only when it has an ETag, to be asked again with If-None-Match."""
    directives: dict[str, str | None] = {}
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.strip().lower()] = value.strip().strip('"') if value else None
    tag = headers.get("etag") or None
    etag = tag if tag is not None and len(tag) <= 200 and tag.isprintable() else None
    if "no-store" in directives or (shared and "private" in directives):
        return Policy(False, None, None)
    max_age: float | None = None
    for name in ("s-maxage", "max-age") if shared else ("max-age",):
        seconds = directives.get(name)
        if seconds is not None and seconds.isdigit():
            max_age = float(min(int(seconds), MAX_AGE_S))
            break
    if "no-cache" in directives:
        max_age = None
    if max_age is not None:
        age = headers.get("age", "")
        max_age = max(0.0, max_age - (int(age) if age.isdigit() else 0))
    return Policy(max_age is not None or etag is not None, max_age, etag)


@dataclass
class Entry:
    key: str
    body: bytes
    stored: float  # time.time() when received or last confirmed (304)
    max_age: float | None
    etag: str | None

    @property
    def fresh(self) -> bool:
        return self.max_age is not None and time.time() - self.stored < self.max_age


class Cache:
    """An on-disk cache of answers, under `folder` (created 0700 on first store)."""

    def __init__(self, folder: Path, *, max_bytes: int = 256 * MiB, shared: bool = False) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.shared = shared
        self._stores = 0

    def _path(self, key: str) -> Path:
        return self.folder / hashlib.sha256(key.encode()).hexdigest()

    def get(self, key: str) -> Entry | None:
        """The entry for this key (fresh or stale), or None; a damaged file is no entry."""
        try:
            with open(self._path(key), "rb") as f:
                head = json.loads(f.readline())
                body = f.read()
        except (OSError, ValueError):
            return None
        if not isinstance(head, dict) or head.get("key") != key or head.get("size") != len(body):
            return None
        stored, max_age, etag = head.get("stored"), head.get("max_age"), head.get("etag")
        if not isinstance(stored, (int, float)) or not isinstance(
            max_age, (int, float, type(None))
        ):
            return None
        return Entry(key, body, float(stored), max_age, etag if isinstance(etag, str) else None)

    def put(self, key: str, body: bytes, rule: Policy) -> None:
        """Keep (or, under no-store, drop) an answer as its headers allow."""
        if not rule.store:
            self.drop(key)
            return
        head = {
            "key": key,
            "size": len(body),
            "stored": time.time(),
            "max_age": rule.max_age,
            "etag": rule.etag,
        }
        self._write(key, json.dumps(head).encode() + b"\n" + body)

    def refresh(self, entry: Entry, rule: Policy) -> None:
        """A 304 confirmed the entry: fresh again for what its headers now say."""
        if not rule.store:
            self.drop(entry.key)
            return
        etag = rule.etag or entry.etag
        self.put(entry.key, entry.body, Policy(True, rule.max_age, etag))

    def drop(self, key: str) -> None:
        with contextlib.suppress(OSError):
            self._path(key).unlink()

    def _write(self, key: str, data: bytes) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, self._path(key))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            return  # a cache that cannot be written is no cache, never a failure
        self._stores += 1
        if self._stores % EVICT_EVERY == 1:
            self.evict()

    def evict(self) -> None:
        """Oldest entries out until the folder holds at most `max_bytes`."""
        files = []
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.folder):
                with contextlib.suppress(OSError):
                    st = entry.stat()
                    files.append((st.st_mtime, st.st_size, entry.path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size
