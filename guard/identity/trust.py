"""Whom a verifier believes: the trust anchors behind the 'trusted' state.

Anchors are the local identity's CA, any `--trust` files, the PEM files in GUARD_HOME/trust
(added with `guard keys trust`) and the files listed in GUARD_TRUST (os.pathsep-separated).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from guard import config
from guard.errors import IdentityError


def configured() -> list[Path]:
    folder = config.trust_dir()
    files = sorted(folder.glob("*.pem")) if folder.is_dir() else []
    env = os.environ.get("GUARD_TRUST", "")
    files += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return files


def anchors_pem(extra: Iterable[str | os.PathLike[str]] = ()) -> str:
    from guard.identity.local_ca import local_ca_pem

    chunks: list[str] = []
    local = local_ca_pem()
    if local:
        chunks.append(local.decode())
    for path in [*configured(), *map(Path, extra)]:
        chunks.append(_read_pem(path))
    return "\n".join(chunks)


def add(path: str | os.PathLike[str]) -> Path:
    """Copy a CA certificate into the configured list (validated first)."""
    from guard.media.atomic_write import save_atomic

    src = Path(path)
    text = _read_pem(src)
    folder = config.trust_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / (src.stem + ".pem")
    return save_atomic(dest, text.encode(), force=True)  # all or nothing: never a torn anchor


def _read_pem(path: Path) -> str:
    from cryptography import x509

    try:
        text = path.read_text()
        x509.load_pem_x509_certificates(text.encode())
    except FileNotFoundError as exc:
        raise IdentityError(f"{path}: trust anchor file not found") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise IdentityError(f"{path}: not a PEM CA certificate ({exc})") from exc
    return text
