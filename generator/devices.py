"""Whether memory is short on the device a model runs on (guard.devices picks the device)."""

from __future__ import annotations

import os


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
