"""A single-file checkpoint's tensors (.safetensors, or a .ckpt/.pt read without running code).

`shapes` reads only a .safetensors header, so a model's architecture is known before any weight
is loaded.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any


def shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a checkpoint without reading its weights."""
    if path.suffix.lower() == ".safetensors":
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def read_state_dict(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state
