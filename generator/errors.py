"""The generator's one error type, in its own module so every generator module can raise it."""

from __future__ import annotations

from guard.errors import GuardError


class GenerationError(GuardError):
    """The settings cannot produce an image (bad size, missing input, incompatible files)."""
