"""Where a model runs and whether memory is short: the generator's device picker.

`auto` prefers a CUDA GPU, then Apple Metal, then the CPU; a device asked for by name that is not
there is an error that says which to use instead.
"""

from __future__ import annotations

import os

from guard.errors import GuardError


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise GuardError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    if device == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise GuardError("--device mps: Apple Metal is not available here; use --device cpu")
    return device


def short_of_memory(device: str, family: str) -> bool:
    """Attention slicing and VAE tiling cost ~10% speed; use them only when memory is short."""
    import torch

    gib = 1 << 30
    if device == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        return total < (12 if family == "sdxl" else 8) * gib
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return False
    return total < (32 if family == "sdxl" else 16) * gib
