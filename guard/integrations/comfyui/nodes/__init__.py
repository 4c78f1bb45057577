"""guard's ComfyUI custom nodes: Save Image, Protect Artwork, Verify and Detect Watermark.

ComfyUI imports this folder (custom_nodes/guard-comfyui) and reads NODE_CLASS_MAPPINGS and
NODE_DISPLAY_NAME_MAPPINGS. The nodes are thin: each one's FUNCTION calls one function of
guard.integrations.comfyui, so guard must be installed in the Python that runs ComfyUI. ComfyUI's
own modules (folder_paths, comfy.*) are imported when a node runs, never at import: guard reads
this package's files to install it, outside ComfyUI.
"""

try:
    import guard.integrations.comfyui  # noqa: F401
except ImportError as exc:  # pragma: no cover - only inside a ComfyUI without guard
    raise ImportError(
        "guard's ComfyUI nodes need the guard package in the Python environment that runs "
        "ComfyUI; install guard there (pip install <path to guard>), then restart ComfyUI"
    ) from exc

from .detect_watermark import DetectWatermarkGuard
from .protect_artwork import ProtectArtworkGuard
from .save_image import SaveImageGuard
from .verify import VerifyGuard

NODE_CLASS_MAPPINGS = {
    "GuardSaveImage": SaveImageGuard,
    "GuardProtectArtwork": ProtectArtworkGuard,
    "GuardVerify": VerifyGuard,
    "GuardDetectWatermark": DetectWatermarkGuard,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "GuardSaveImage": "Save Image (guard)",
    "GuardProtectArtwork": "Protect Artwork (guard)",
    "GuardVerify": "Verify (guard)",
    "GuardDetectWatermark": "Detect Watermark (guard)",
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
