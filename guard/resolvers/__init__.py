"""Remote soft binding resolvers: where `guard verify` asks when the local ledger has no record
for a found watermark (the C2PA Soft Binding Resolution API 1.0, as a client). See
docs/resolvers.md. httpx is imported only when a resolver is asked."""

from __future__ import annotations

from guard.resolvers.client import Answer, Limits, Resolvers, checked, from_env, parse_urls

__all__ = ["Answer", "Limits", "Resolvers", "checked", "from_env", "parse_urls"]
