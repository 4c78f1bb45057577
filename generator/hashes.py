"""The short hashes web UI writes into infotexts, computed the same way so sites can match them.

- Model hash: sha256 of the checkpoint file, first 10 hex digits (web UI's "AutoV2").
- Lora hashes: sha256 of a .safetensors file *after its JSON header* (the "addnet" hash, so
  editing metadata does not change it), first 12 hex digits; whole-file sha256 for other formats.
- TI hashes: sha256 of the embedding file, first 12 hex digits.

A diffusers folder has no single checkpoint file; guard hashes its UNet weights file, which
identifies the model just as well (documented in docs/generate.md).

Hashing a 2-7 GB checkpoint takes seconds, so results are cached in GUARD_HOME keyed by path,
size and modification time, as web UI's cache.json does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from guard import config

_CHUNK = 1 << 20
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")


def _cache_file() -> Path:
    return config.home() / "cache" / "hashes.json"


def _cached(path: Path, kind: str, compute) -> str:
    st = path.stat()
    key = f"{kind}:{path.resolve()}"
    stamp = [st.st_size, st.st_mtime_ns]
    cache_file = _cache_file()
    cache: dict[str, dict] = {}
    with contextlib.suppress(OSError, ValueError):
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
    hit = cache.get(key)
    if isinstance(hit, dict) and hit.get("stamp") == stamp and isinstance(hit.get("sha256"), str):
        return hit["sha256"]
    digest = compute(path)
    cache[key] = {"stamp": stamp, "sha256": digest}
    with contextlib.suppress(OSError):  # a read-only home only costs a re-hash next time
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache), encoding="utf-8")
        os.replace(tmp, cache_file)
    return digest


def _sha256(path: Path, offset: int = 0) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(offset)
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _addnet(path: Path) -> str:
    with path.open("rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
    return _sha256(path, 8 + header_len)


def file_sha256(path: str | Path) -> str:
    return _cached(Path(path), "sha256", _sha256)


def model_hash(path: str | Path) -> str:
    """web UI's 'Model hash' of a checkpoint file or diffusers folder (10 hex digits)."""
    p = Path(path)
    if p.is_dir():
        p = unet_weights(p)
    return file_sha256(p)[:10]


def unet_weights(folder: Path) -> Path:
    """The UNet's weights file in a diffusers folder (full precision preferred)."""
    files = sorted(
        (f for f in (folder / "unet").glob("*") if f.suffix in _WEIGHT_SUFFIXES),
        key=lambda f: (".fp16." in f.name, f.suffix != ".safetensors", f.name),
    )
    if not files:
        raise FileNotFoundError(f"{folder}: no unet weights found")
    return files[0]


def lora_hash(path: str | Path) -> str:
    p = Path(path)
    if p.suffix.lower() == ".safetensors":
        return _cached(p, "addnet", _addnet)[:12]
    return file_sha256(p)[:12]


def embedding_hash(path: str | Path) -> str:
    return file_sha256(path)[:12]


def _weights_file(path: str | Path, what: str) -> Path:
    """The file itself, or the weights file a diffusers folder would load (full precision and
    safetensors first)."""
    p = Path(path)
    if not p.is_dir():
        return p
    files = sorted(
        (f for f in p.glob("*") if f.suffix in _WEIGHT_SUFFIXES),
        key=lambda f: (".fp16." in f.name, f.suffix != ".safetensors", f.name),
    )
    if not files:
        raise FileNotFoundError(f"{p}: no {what} weights found")
    return files[0]


def vae_hash(path: str | Path) -> str:
    """web UI's 'VAE hash' (10 hex digits) of a VAE file or a diffusers VAE folder."""
    return file_sha256(_weights_file(path, "VAE"))[:10]


def controlnet_hash(path: str | Path) -> str:
    """The "[hash]" web UI's ControlNet extension shows after a model's name: web UI's old short
    model hash, sha256 of the 64 KiB at offset 1 MiB, 8 hex digits (of the weights file in a
    diffusers ControlNet folder)."""
    p = _weights_file(path, "ControlNet")
    h = hashlib.sha256()
    with p.open("rb") as f:
        f.seek(0x100000)
        h.update(f.read(0x10000))
    return h.hexdigest()[:8]
