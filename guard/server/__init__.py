"""`guard serve`: a local web page to verify, sign and protect images, and the C2PA soft binding
resolution API over guard's ledger. The web framework (FastAPI, Starlette, uvicorn) is imported
only inside this package; everything it does is a call into the guard library.

    from guard.server import ServeSettings, create_app
    app = create_app(ServeSettings(ledger=Path("ledger.sqlite3"), read_only=True))
"""

from __future__ import annotations

from guard.server.app import create_app
from guard.server.settings import Limits, ServeSettings

__all__ = ["Limits", "ServeSettings", "create_app"]
