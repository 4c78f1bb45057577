"""The `X-Robots-Tag: noai` / `noimageai` HTTP opt-out, as a downloader recorded it for a sample.

The header travels with the HTTP response, not the file, so only what the downloader kept
can be read: a header value saved in the sample's metadata (`X-Robots-Tag`, any spelling, at
the top level or in a `headers` object), or img2dataset's own record that it refused the
image ("Use of image disallowed by X-Robots-Tag directive"). Directives are parsed as
img2dataset and datadiligence parse them: comma-separated, optionally scoped to one crawler
with `name: directive`; a scoped directive counts when it names the given user agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AI_DIRECTIVES = frozenset({"noai", "noimageai"})
HEADER = "x-robots-tag"
IMG2DATASET_REFUSAL = "disallowed by x-robots-tag"


def ai_directives(value: str, user_agent: str | None = None) -> list[str]:
    """The AI opt-out directives in one header value (empty when it allows AI use)."""
    out: list[str] = []
    scope, sep, rest = value.partition(":")
    if sep and scope.strip() and "," not in scope and " " not in scope.strip():
        # "img2dataset: noai, noimageai" applies to that crawler only
        if user_agent is None or scope.strip().lower() != user_agent.lower():
            return out
        value = rest
    for part in value.split(","):
        directive = part.strip().lower()
        if directive in AI_DIRECTIVES and directive not in out:
            out.append(directive)
    return out


def recorded_values(meta: Mapping[str, Any] | None) -> list[str]:
    """The X-Robots-Tag header values kept in a sample's metadata (one per header line)."""
    if not meta:
        return []
    values: list[str] = []
    for source in (meta, meta.get("headers") if isinstance(meta.get("headers"), Mapping) else {}):
        for key, value in source.items():
            if str(key).lower().replace("_", "-") != HEADER:
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
