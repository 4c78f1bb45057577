"""`guard serve`: a local web page to verify, sign and protect images, and the C2PA soft binding
resolution API over guard's ledger. The web framework (FastAPI, Starlette, uvicorn) is imported
only inside this package; everything it does is a call into the guard library.

    from guard.server import ServeSettings, create_app
    app = create_app(ServeSettings(ledger=Path("ledger.sqlite3"), read_only=True))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from guard.server.settings import Limits, ServeSettings

if TYPE_CHECKING:
    from guard.server.app import create_app

__all__ = ["Limits", "ServeSettings", "create_app"]


def __getattr__(name: str) -> Any:
    # The app (FastAPI, Starlette) only when asked for: the check workers import
    # guard.server.checks, and each one paid about 0.7 s of CPU for a framework it never uses.
    if name == "create_app":
        from guard.server.app import create_app

        return create_app
    raise AttributeError(f"module 'guard.server' has no attribute {name!r}")
