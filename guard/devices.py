"""The one device picker: where torch work runs, for generation and for protection alike."""

from __future__ import annotations

from guard.errors import GuardError


def pick_device(device: object = "auto") -> str:
    """ "auto" → CUDA, else Apple Metal, else CPU; an explicit choice is checked, not trusted."""
    import torch

    name = "auto" if device is None else str(device)
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GuardError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    if name == "mps" and not mps:
        raise GuardError("--device mps: Apple Metal is not available here; use --device cpu")
    return name


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX-512 BF16, AMX, Arm BF16).

    Elsewhere oneDNN emulates bfloat16, and an autocast that halves the time on such a CPU makes
    it ~25x slower on one without (docs/protect.md, *Speed*). torch asks oneDNN the same question
    before its own bf16 fast paths; there is no public name for it, so a torch without it says no.
    """
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
