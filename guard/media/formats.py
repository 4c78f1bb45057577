"""The image formats guard reads, writes and signs: their MIME types and file extensions.

Shared by the reader (guard.media.imageio), the encoder (guard.media.encoding) and everything that
names output files, so the list lives once.
"""

from __future__ import annotations

import os
from pathlib import Path

from guard.errors import ImageInputError

# Pillow format name -> MIME type; these are the formats guard reads, writes and signs.
MIME = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
}
EXTENSIONS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".avif": "AVIF",
}
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "TIFF": ".tif", "AVIF": ".avif"}


def format_for(path: str | os.PathLike[str]) -> str:
    """Output format from the file name; guard writes only formats it can also sign."""
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ImageInputError(
            f"{path}: cannot tell the output format from '{suffix or '(no extension)'}'; "
            f"use one of {', '.join(sorted(EXTENSIONS))}"
        )
    return EXTENSIONS[suffix]
