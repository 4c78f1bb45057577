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
    """Whether this CPU has bfloat16 instructions (AVX-512 BF16 or AMX on x86, BF16 on Arm).

    Without them oneDNN emulates bfloat16: an autocast that is 1.6x faster on a CPU that has them
    made a protection ~25x slower on an AVX2 one (docs/protect.md, *Speed*). torch asks cpuinfo
    the same questions; it has no public name for them, so a torch without these says no.
    """
    import platform

    import torch

    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        # on Arm, oneDNN's bf16 check is the BF16 extension itself
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
