"""Model references (hub id, diffusers folder, single-file checkpoint) shared by generate and protect.

Both commands accept the same `--model` strings and must fail the same helpful way when offline.
Nothing here imports diffusers; callers do the loading and wrap it in `loading(ref)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from guard.errors import ModelNotFoundError

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")

Kind = Literal["folder", "single_file", "hub"]


@dataclass(frozen=True)
class ModelRef:
    raw: str
    kind: Kind
    path: Path | None  # local path for folder / single_file

    @property
    def name(self) -> str:
        """Short name as web UI shows it: file stem, folder name, or hub repo name."""
        if self.path is not None:
            return self.path.stem if self.kind == "single_file" else self.path.name
        return self.raw.rstrip("/").split("/")[-1]


def resolve(ref: str | Path) -> ModelRef:
    """Classify a reference without touching the network."""
    raw = str(ref)
    p = Path(raw).expanduser()
    if p.is_dir():
        return ModelRef(raw, "folder", p)
    if p.is_file():
        if p.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ModelNotFoundError(
                f"{raw}: not a model checkpoint (expected one of {', '.join(SINGLE_FILE_SUFFIXES)}, "
                "or a diffusers folder)."
            )
        return ModelRef(raw, "single_file", p)
    looks_local = raw.startswith((".", "/", "~")) or p.suffix.lower() in SINGLE_FILE_SUFFIXES
    if looks_local or raw.count("/") != 1:
        raise ModelNotFoundError(
            f"{raw}: no such file or folder, and it is not a hub id of the form 'owner/name'. "
            "Pass a diffusers folder, a .safetensors/.ckpt file, or a hub id."
        )
    return ModelRef(raw, "hub", None)


# what the error is about -> the option that names it (the generate/protect CLI spelling)
_OPTIONS = {
    "model": "--model",
    "vae": "--vae",
    "refiner": "--refiner",
    "controlnet": "--control-model",
}


def offline_error(
    ref: ModelRef, what: str = "model", cause: BaseException | None = None
) -> ModelNotFoundError:
    detail = f" ({type(cause).__name__})" if cause is not None else ""
    cause_name = type(cause).__name__ if cause is not None else ""
    option = _OPTIONS.get(what.lower(), "--model")
    if ref.kind == "hub" and "RepositoryNotFound" in cause_name:
        msg = (
            f"{what} '{ref.raw}' does not exist on the Hugging Face hub (or it is private: log in "
            f"with `huggingface-cli login`). Check the spelling, or pass a local diffusers folder "
            f"or a .safetensors/.ckpt file with {option}."
        )
    elif ref.kind == "hub" and "GatedRepo" in cause_name:
        msg = (
            f"{what} '{ref.raw}' is gated: accept its license on huggingface.co/{ref.raw} and log "
            f"in with `huggingface-cli login`, or pass a local copy with {option}."
        )
    elif ref.kind == "hub":
        msg = (
            f"{what} '{ref.raw}' is not in the local Hugging Face cache and the hub cannot be reached"
            f"{detail}. Download it once on a connected machine (huggingface-cli download {ref.raw}), "
            f"or pass a local diffusers folder or a .safetensors/.ckpt file with {option}."
        )
    else:
        msg = (
            f"{what} '{ref.raw}' could not be loaded{detail}: {cause}. Check that it is a complete "
            "diffusers folder (with model_index.json) or a Stable Diffusion single-file checkpoint; "
            "for a single file offline, pass the matching config folder as well."
        )
    return ModelNotFoundError(msg)


@contextlib.contextmanager
def loading(ref: ModelRef, what: str = "model") -> Iterator[None]:
    """Turn the many exception types of hub/diffusers loading into one actionable ModelNotFoundError."""
    try:
        yield
    except ModelNotFoundError:
        raise
    except (OSError, ValueError) as exc:  # HF raises OSError subclasses offline
        raise offline_error(ref, what, exc) from exc
    except Exception as exc:
        name = type(exc).__name__
        if any(k in name for k in ("Offline", "Connection", "HTTP", "Hub", "Repository", "Entry")):
            raise offline_error(ref, what, exc) from exc
        raise
