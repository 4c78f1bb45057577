"""The `X-Robots-Tag: noai` / `noimageai` HTTP opt-out, as a downloader recorded it for a sample.

The header travels with the HTTP response, not the file, so only what the downloader kept
can be read: a header value saved in the sample's metadata (`X-Robots-Tag`, any spelling, at
the top level or in a `headers` object), or img2dataset's own record that it refused the
image ("Use of image disallowed by X-Robots-Tag directive").

The grammar is the one Google and MDN document: comma-separated rules, case-insensitive, each
optionally scoped to a crawler by `name: rule`; a scope holds for the rules after it until the
next one (`BadBot: noindex, nofollow, googlebot: nofollow`). Rules that take a value after a colon
(`max-snippet: 50`, `max-image-preview: large`, `unavailable_after: Wed, 03 Dec 2025 13:09:53
GMT`) are rules, not scopes. img2dataset and datadiligence read the first `name:` of a value as a
scope, so they drop the `noai` of `max-snippet: 50, noai`; guard does not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

AI_DIRECTIVES = frozenset({"noai", "noimageai"})
HEADER = "x-robots-tag"
IMG2DATASET_REFUSAL = "disallowed by x-robots-tag"
# Google's rules written `name: value`; any other `name:` starts a crawler's scope
VALUED_RULES = frozenset(
    {"max-snippet", "max-image-preview", "max-video-preview", "unavailable_after"}
)
_SCOPED = re.compile(r"^\s*([a-z][a-z0-9_.-]*)\s*:\s*(.*)$", re.S)


def ai_directives(value: str, user_agent: str | None = None) -> list[str]:
    """The AI opt-out directives in one header value that apply to `user_agent` (rules with no
    scope apply to every crawler); empty when it allows AI use."""
    out: list[str] = []
    scope: str | None = None
    for part in value.split(","):
        rule = part.strip().lower()
        match = _SCOPED.match(rule)
        if match and match[1] not in VALUED_RULES and match[1] not in AI_DIRECTIVES:
            scope, rule = match[1], match[2].strip()
        elif match and match[1] in AI_DIRECTIVES:
            rule = match[1]  # `noai: …` is no crawler's name: read it as the directive
        applies = scope is None or (user_agent is not None and scope == user_agent.lower())
        if applies and rule in AI_DIRECTIVES and rule not in out:
            out.append(rule)
    return out


def recorded_values(meta: Mapping[str, Any] | None, header: str = HEADER) -> list[str]:
    """The values of one HTTP header kept in a sample's metadata (one per header line), under any
    spelling of its name (`X-Robots-Tag`, `x_robots_tag`), at the top level or in `headers`."""
    if not meta:
        return []
    values: list[str] = []
    headers = meta.get("headers")
    for source in (meta, headers if isinstance(headers, Mapping) else {}):
        for key, value in source.items():
            if str(key).lower().replace("_", "-") != header:
                continue
            if isinstance(value, str):
                values.append(value)
            elif isinstance(value, list):
                values.extend(v for v in value if isinstance(v, str))
    return values


def opt_out(meta: Mapping[str, Any] | None, user_agent: str | None = None) -> str | None:
    """Why the sample is opted out through X-Robots-Tag, in words, or None."""
    if not meta:
        return None
    found = [d for v in recorded_values(meta) for d in ai_directives(v, user_agent)]
    if found:
        return f"X-Robots-Tag: {', '.join(dict.fromkeys(found))}"
    message = meta.get("error_message")
    if isinstance(message, str) and IMG2DATASET_REFUSAL in message.lower():
        return "the downloader refused it: " + message
    return None
