"""Identity: who signs (signer), the local CA made on first use (local_ca), whom a verifier
believes (trust)."""

from __future__ import annotations

from guard.identity.signer import ALGORITHMS, KEY_PASSPHRASE_ENV, Identity, SignCallback

__all__ = ["ALGORITHMS", "KEY_PASSPHRASE_ENV", "Identity", "SignCallback"]
