"""The generator's error types, in their own module so every generator module can raise them."""

from __future__ import annotations

from guard.errors import GuardError


class GenerationError(GuardError):
    """The settings cannot produce an image (bad size, missing input, incompatible files)."""


class ModelLoadError(GuardError):
    """A model file or folder exists but is not something guard can generate with."""
