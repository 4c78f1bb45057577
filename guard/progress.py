"""The one rule for progress bars: drawn only when stderr is a terminal.

`guard scan DIR 2> log` must not fill the log with tqdm's `\\r` frames, so every bar (scan,
verify, protect, generate's diffusers bars) asks here rather than deciding for itself.
"""

from __future__ import annotations

import sys


def disable(progress: bool | str = True) -> bool | None:
    """tqdm's `disable=` for a bar the caller wants (`progress`): None makes tqdm draw it only when
    its stream is a terminal, and lets tqdm.auto's notebook bar show in Jupyter."""
    return None if progress else True


def drawn(progress: bool = True) -> bool:
    """The same rule, decided now, for bars guard cannot pass `disable=` to (diffusers' and
    transformers' loading bars, which one global switch turns off). A Jupyter kernel counts as
    a terminal, as it does for tqdm.auto's bars."""
    if not progress:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return (callable(isatty) and bool(isatty())) or "ipykernel" in sys.modules
