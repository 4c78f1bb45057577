"""One exception family, so the CLI can turn every expected failure into a one-line message and exit code 2."""

from __future__ import annotations


class GuardError(Exception):
    """An expected failure the user can act on; its message says what went wrong and what to do."""

    exit_code = 2


class ImageInputError(GuardError):
    """An input file is not an image guard can read (empty, truncated, bomb, animated, ...)."""


class OutputExistsError(GuardError):
    """The output file exists; guard never overwrites without --force."""


class OutputCollisionError(GuardError):
    """Two inputs of one run would be written to the same file, or an output is an input."""


class OutputWriteError(GuardError):
    """An output could not be written (read-only folder, full disk, ...); nothing partial is left."""


class IdentityError(GuardError):
    """The signing identity is missing, unreadable or not usable for C2PA."""


class SigningError(GuardError):
    """The C2PA SDK refused to sign."""


class TooSmallError(GuardError):
    """The image is too small for the requested operation (watermark, protection)."""


class ModelNotFoundError(GuardError):
    """A model reference could not be resolved locally and the hub is unreachable."""
