"""Hugging Face hub snapshots: a model's local folder, downloaded once when online.

With HF_HUB_OFFLINE set, only what is already in the local cache is used; a model that cannot be
had becomes guard.modelref's ModelNotFoundError in plain words (guard.modelref.loading).
"""

from __future__ import annotations

import os
from pathlib import Path

from guard.modelref import ModelRef, loading


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def download_pipeline(ref: ModelRef, what: str = "model") -> Path:
    """The local snapshot folder of a hub model (downloaded once when online)."""
    from diffusers import DiffusionPipeline

    with loading(ref, what):
        # safety_checker=None: its 1.2 GB of weights are never used (see load_model)
        folder = DiffusionPipeline.download(
            ref.raw, local_files_only=offline(), safety_checker=None
        )
    return Path(folder)


def download_snapshot(ref: ModelRef, what: str = "model") -> Path:
    """The local snapshot folder of any hub repository (a VAE, a ControlNet)."""
    with loading(ref, what):
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref.raw, local_files_only=offline()))
