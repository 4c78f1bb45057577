"""How long one image's check may take in a scan worker: the default, its check, its words.

`guard.scan.local` enforces it: past it, the worker process is killed and replaced, and the
image is `unverifiable` (a hostile or pathological file must not hold the scan). Import-light,
so the CLI can show the default.
"""

from __future__ import annotations

DEFAULT_FILE_TIMEOUT = 60.0  # seconds: ample for a large image with the watermark check on


def check(seconds: float | None) -> None:
    """A budget is a number of seconds over 0, or None for no limit."""
    if seconds is not None and not seconds > 0:
        raise ValueError(f"file_timeout must be a number of seconds over 0, or None; not {seconds}")


def out_of_time(seconds: float) -> str:
    """The reason an image that ran past the budget is unverifiable."""
    return (
        f"ran out of time: its check took more than {seconds:g} s, the scan's limit per file "
        "(file_timeout); its worker process was stopped"
    )
