"""Capture diffusers' log messages, which guard hides from users, to act on the meaningful ones."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


@contextlib.contextmanager
def diffusers_warnings() -> Iterator[list[str]]:
    """Collect diffusers' warnings (hidden from users) to turn the meaningful ones into errors."""
    logger = logging.getLogger("diffusers")
    seen: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    saved = (logger.level, logger.handlers[:], logger.propagate)
    logger.handlers = [_Collect()]
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield seen
    finally:
        logger.setLevel(saved[0])
        logger.handlers = saved[1]
        logger.propagate = saved[2]
