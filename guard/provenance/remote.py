"""A manifest store that is not in the file but at a URL the file points to (a C2PA "remote
manifest"): XMP `dcterms:provenance` in the file, as the SDK reads it, or the HTTP header
`Link: <URL>; rel="c2pa-manifest"` a downloader recorded for the sample.

Pure data and text, no network and no SDK: which reference a file makes, whether guard will use
it (an http(s) URL of printable ASCII, no user name, at most `MAX_URL` characters), and how it is
shown. Fetching and validating the store against the file is `guard.provenance.remote_fetch`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

MAX_URL = 2048
LINK_REL = "c2pa-manifest"
# not_fetched: fetching was not asked for; fetched: the store was fetched and validated against
# the file (the report's state says how that went); failed: fetching was asked for and did not
# work (`problem`); refused: the reference is no URL guard will fetch or show (`problem`)
STATUSES = ("not_fetched", "fetched", "failed", "refused")
_SDK_URL = re.compile(r"from url (.*)\Z", re.S)  # c2pa-rs: "must fetch remote manifests from url X"


@dataclass
class RemoteManifest:
    url: str | None  # the http(s) URL; None when refused (never shown then)
    source: str  # "xmp": the file's dcterms:provenance; "link": a recorded Link header
    status: str = "not_fetched"
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "source": self.source,
            "status": self.status,
            "problem": self.problem,
        }

    def words(self) -> str:
        """What the reference came to, for the verdict's headline."""
        where = f"remote manifest at {self.url}"
        if self.status == "not_fetched":
            return f"{where}, not fetched (--fetch-remote fetches and checks it)"
        if self.status == "failed":
            return f"{where}, could not be fetched (the note says why)"
        if self.status == "refused":
            return f"it points to a remote manifest guard will not fetch: {self.problem}"
        return f"{where}, fetched"


def reference(text: str | None, source: str) -> RemoteManifest:
    """The reference a file makes, refused unless `text` is an http(s) URL guard will use."""
    problem = url_problem(text)
    if problem is not None:
        return RemoteManifest(None, source, "refused", problem)
    return RemoteManifest(text, source)


def url_problem(text: str | None) -> str | None:
    """Why `text` is no URL to fetch or show, else None. Nothing of a refused URL is shown but
    its length: it may be built to mislead a reader or a terminal."""
    if not text:
        return "no URL given"
    if len(text) > MAX_URL:
        return f"its URL is {len(text)} characters long, over {MAX_URL}"
    if any(not ("\x21" <= c <= "\x7e") for c in text):
        return "its URL holds spaces, control characters or non-ASCII characters"
    try:
        parts = urlsplit(text)
        _ = parts.port  # a malformed port raises ValueError
    except ValueError:
        return "its URL is malformed"
    if parts.scheme.lower() not in ("http", "https"):
        return "its URL is not http:// or https://"
    if not parts.hostname:
        return "its URL names no host"
    if parts.username is not None or parts.password is not None:
        return "its URL carries a user name (https://name@host), which can disguise the host"
    return None


def shown(text: str, limit: int = 300) -> str:
    """A server's or file's words made safe to print: control and non-ASCII characters escaped,
    at most `limit` characters."""
    out = "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode() for c in text)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def from_sdk(message: str) -> str | None:
    """The URL in the SDK's refusal to fetch a remote store ("Remote: must fetch remote manifests
    from url URL"), or None when the message names none. c2pa-rs passes the XMP attribute's text
    on as written, XML escapes and all (`&amp;`, `&#10;`), so they are resolved here: a URL is
    judged by what it says, not by how XML spelled it."""
    match = _SDK_URL.search(message)
    return _XML_ESCAPE.sub(_unescape, match[1]) if match else None


_XML_ESCAPE = re.compile(r"&(#[0-9]{1,7}|#x[0-9A-Fa-f]{1,6}|amp|lt|gt|quot|apos);")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _unescape(match: re.Match[str]) -> str:
    name = match[1]
    if not name.startswith("#"):
        return _NAMED[name]
    code = int(name[2:], 16) if name[1] == "x" else int(name[1:])
    return chr(code) if code <= 0x10FFFF else "\ufffd"


def link_target(values: Sequence[str], base: str | None = None) -> str | None:
    """The target of the first `rel="c2pa-manifest"` link in recorded Link header values
    (RFC 8288: `<target>; rel="a b"`, several links comma-separated), made absolute against the
    sample's own URL `base` when relative; None when there is none."""
    for value in values:
        for target, params in _links(value):
            rels = _rel(params)
            if LINK_REL in rels:
                if base and not urlsplit(target).scheme:
                    try:
                        return urljoin(base, target)
                    except ValueError:
                        return target  # refused as it is by url_problem
                return target
    return None


_LINK = re.compile(r"<([^>]*)>([^,<]*)")
_PARAM = re.compile(r';\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*))?')


def _links(value: str) -> list[tuple[str, str]]:
    return [(m[1].strip(), m[2]) for m in _LINK.finditer(value[: 16 * MAX_URL])]


def _rel(params: str) -> list[str]:
    for name, raw in _PARAM.findall(params):
        if name.lower() == "rel":
            text = raw[1:-1] if raw.startswith('"') and raw.endswith('"') else raw
            return text.lower().split()
    return []
